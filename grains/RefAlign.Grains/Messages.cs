using RefAlign.Compute.Formats;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Contracts.Messages;

namespace RefAlign.Grains;

/// <summary>
/// The compute layer's records to and from the contracts' messages. Field for field: the messages exist only so that
/// the compute layer stays free of Orleans and the contracts free of TorchSharp.
/// </summary>
public static class Messages
{
    public static PromptMessage ToMessage(this ReferencePrompt p) => new(p.Id, p.Prompt, p.PromptText, p.Reference, p.Harmful);

    public static ReferencePrompt ToCompute(this PromptMessage m) => new(m.Id, m.Prompt, m.PromptText, m.Reference, m.Harmful);

    public static RolloutMessage ToMessage(this Rollout r) =>
        new(r.Position, r.PromptId, r.SampleIndex, r.Completion, r.TokenLogProbs, r.Text, r.Finished);

    public static Rollout ToCompute(this RolloutMessage m) =>
        new(m.Position, m.PromptId, m.SampleIndex, m.Completion, m.TokenLogProbs, m.Text, m.Finished);

    public static RolloutRowMessage ToMessage(this RolloutRow r) => new(r.PromptId, r.SampleIndex, r.Prompt, r.Completion, r.Advantage, r.BehaviourLogProbs);

    public static RolloutRow ToCompute(this RolloutRowMessage m) => new(m.PromptId, m.SampleIndex, m.Prompt, m.Completion, m.Advantage, m.BehaviourLogProbs);

    public static SftSequenceMessage ToMessage(this SftSequence s) => new(s.Id, s.Prompt, s.Completion);

    public static SftSequence ToCompute(this SftSequenceMessage m) => new(m.Id, m.Prompt, m.Completion);

    public static PreferencePairMessage ToMessage(this PreferencePair p) => new(p.Id, p.Prompt, p.Chosen, p.Rejected, p.PromptedPrompt);

    public static PreferencePair ToCompute(this PreferencePairMessage m) => new(m.Id, m.Prompt, m.Chosen, m.Rejected, m.PromptedPrompt);

    public static ReferenceLogProbsMessage ToMessage(this ReferenceLogProbs r) => new(r.ChosenSum, r.ChosenMean, r.RejectedSum,
        r.RejectedMean, r.PromptedChosenSum, r.PromptedChosenMean, r.PromptedRejectedSum, r.PromptedRejectedMean);

    public static ReferenceLogProbs ToCompute(this ReferenceLogProbsMessage m) => new(m.ChosenSum, m.ChosenMean, m.RejectedSum,
        m.RejectedMean, m.PromptedChosenSum, m.PromptedChosenMean, m.PromptedRejectedSum, m.PromptedRejectedMean);

    public static PreferenceRowMessage ToMessage(this PreferenceRow r) => new(r.Pair.ToMessage(), r.Reference.ToMessage());

    public static PreferenceRow ToCompute(this PreferenceRowMessage m) => new(m.Pair.ToCompute(), m.Reference.ToCompute());

    public static StepResultMessage ToMessage(this StepResult r) => new(r.Step, r.WeightVersion, r.Metrics);

    public static StepResult ToCompute(this StepResultMessage m) => new(m.Step, m.WeightVersion, m.Metrics);

    public static CheckpointMessage ToMessage(this CheckpointManifest c) => new(c.Step, c.DataCursor, c.Epoch, c.RunId, c.Extra);

    public static CheckpointManifest ToCompute(this CheckpointMessage m) => new(m.Step, m.DataCursor, m.Epoch, m.RunId, m.Extra);

    public static TensorEntry ToMessage(this WeightEntry e) => new(e.Name, e.DType, e.Shape, e.Offset, e.Length);

    public static WeightEntry ToCompute(this TensorEntry e) => new(e.Name, e.DType, e.Shape, e.Offset, e.Length);
}
