namespace RefAlign.Compute.Training;

/// <summary>Frozen-reference log-probs of one pair (sum and mean over completion tokens), plain and, for Sr-*, prompted.</summary>
public sealed record ReferenceLogProbs(double ChosenSum, double ChosenMean, double RejectedSum, double RejectedMean,
    double PromptedChosenSum = double.NaN, double PromptedChosenMean = double.NaN,
    double PromptedRejectedSum = double.NaN, double PromptedRejectedMean = double.NaN);

/// <summary>One pair with its reference log-probs, as the learner consumes it.</summary>
public sealed record PreferenceRow(PreferencePair Pair, ReferenceLogProbs Reference);

/// <summary>
/// One sampled response with its (shaped, clipped, weighted) advantage and the log-prob of each completion token under
/// the behaviour policy that sampled it (the generator's record; the GRPO family's ratio and the off-policy weight).
/// </summary>
public sealed record RolloutRow(int PromptId, int SampleIndex, int[] Prompt, int[] Completion, double Advantage, float[]? BehaviourLogProbs = null);

/// <summary>What a learner step reports: the optimizer step it produced, the new weight version and its metrics.</summary>
public sealed record StepResult(int Step, long WeightVersion, IReadOnlyDictionary<string, double> Metrics);
