namespace RefAlign.Contracts.Messages;

// The batches that cross silos, as plain immutable records: token ids as int arrays, never tensors. The grains map them
// to and from the compute layer's records (which carry no Orleans attributes).

/// <summary>A RefAlign prompt with its reference answer (id = position in the data set).</summary>
[GenerateSerializer, Immutable]
public sealed record PromptMessage(
    [property: Id(0)] int Id,
    [property: Id(1)] int[] Prompt,
    [property: Id(2)] string PromptText,
    [property: Id(3)] string Reference,
    [property: Id(4)] bool Harmful);

/// <summary>One sampled response: its position in the request, token ids, per-token log-probs and text.</summary>
[GenerateSerializer, Immutable]
public sealed record RolloutMessage(
    [property: Id(0)] int Position,
    [property: Id(1)] int PromptId,
    [property: Id(2)] int SampleIndex,
    [property: Id(3)] int[] Completion,
    [property: Id(4)] float[] TokenLogProbs,
    [property: Id(5)] string Text,
    [property: Id(6)] bool Finished);

/// <summary>One sampled response with its shaped advantage and behaviour log-probs, as the learner consumes it.</summary>
[GenerateSerializer, Immutable]
public sealed record RolloutRowMessage(
    [property: Id(0)] int PromptId,
    [property: Id(1)] int SampleIndex,
    [property: Id(2)] int[] Prompt,
    [property: Id(3)] int[] Completion,
    [property: Id(4)] double Advantage,
    [property: Id(5)] float[]? BehaviourLogProbs = null);

/// <summary>A tokenized preference pair; <see cref="PromptedPrompt"/> is the Sr-* query p ⊕ x (null otherwise).</summary>
[GenerateSerializer, Immutable]
public sealed record PreferencePairMessage(
    [property: Id(0)] int Id,
    [property: Id(1)] int[] Prompt,
    [property: Id(2)] int[] Chosen,
    [property: Id(3)] int[] Rejected,
    [property: Id(4)] int[]? PromptedPrompt);

/// <summary>A tokenized SFT example: the prompt (masked out of the loss) and the completion.</summary>
[GenerateSerializer, Immutable]
public sealed record SftSequenceMessage(
    [property: Id(0)] int Id,
    [property: Id(1)] int[] Prompt,
    [property: Id(2)] int[] Completion);

/// <summary>Frozen-reference log-probs of one pair, plain and (NaN when absent) prompted.</summary>
[GenerateSerializer, Immutable]
public sealed record ReferenceLogProbsMessage(
    [property: Id(0)] double ChosenSum,
    [property: Id(1)] double ChosenMean,
    [property: Id(2)] double RejectedSum,
    [property: Id(3)] double RejectedMean,
    [property: Id(4)] double PromptedChosenSum,
    [property: Id(5)] double PromptedChosenMean,
    [property: Id(6)] double PromptedRejectedSum,
    [property: Id(7)] double PromptedRejectedMean);

[GenerateSerializer, Immutable]
public sealed record PreferenceRowMessage(
    [property: Id(0)] PreferencePairMessage Pair,
    [property: Id(1)] ReferenceLogProbsMessage Reference);

/// <summary>What a learner step produced: the step, the new weight version and the step's metrics.</summary>
[GenerateSerializer, Immutable]
public sealed record StepResultMessage(
    [property: Id(0)] int Step,
    [property: Id(1)] long WeightVersion,
    [property: Id(2)] IReadOnlyDictionary<string, double> Metrics);

/// <summary>A checkpoint's manifest: step, data cursor, epoch, run id and string metadata.</summary>
[GenerateSerializer, Immutable]
public sealed record CheckpointMessage(
    [property: Id(0)] int Step,
    [property: Id(1)] long DataCursor,
    [property: Id(2)] int Epoch,
    [property: Id(3)] string RunId,
    [property: Id(4)] IReadOnlyDictionary<string, string> Extra);
