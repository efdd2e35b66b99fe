using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// The run's learner (key: run id), placed on a learner/GPU silo: the only owner of the optimizer and the only writer
/// of weights. Steps are idempotent by number; each applied step publishes a new weight version.
/// </summary>
public interface ILearnerGrain : IGrainWithStringKey
{
    /// <summary>Loads the policy (minutes for a 7B model), so the call gets a long timeout.</summary>
    [ResponseTimeout("00:15:00")]
    Task Initialize(string configJson, int totalSteps, int stepsPerEpoch);

    /// <summary>
    /// Where training continues: this activation's own position when it has trained or restored already (its weights are
    /// live), else the latest checkpoint restored from the checkpoint root (null: none, start from the model folder).
    /// </summary>
    [ResponseTimeout("00:30:00")]
    Task<CheckpointMessage?> Resume();

    /// <summary>Checkpoints at once if steps were applied since the last checkpoint, then refuses new steps (silo shutdown).</summary>
    [ResponseTimeout("00:30:00")]
    Task Drain();

    [ResponseTimeout("00:30:00")]
    Task<StepResultMessage> LearnRefAlign(int step, IReadOnlyList<RolloutRowMessage> rows);

    [ResponseTimeout("00:30:00")]
    Task<StepResultMessage> LearnPreference(int step, IReadOnlyList<PreferenceRowMessage> rows);

    [ResponseTimeout("00:30:00")]
    Task<IReadOnlyDictionary<string, double>> EvaluatePreference(IReadOnlyList<PreferenceRowMessage> rows);

    [ResponseTimeout("00:30:00")]
    Task<string> Checkpoint(CheckpointMessage manifest);


    Task<long> WeightVersion();

    /// <summary>Frees the learner's memory once its run has ended (the state is in the checkpoints).</summary>
    Task Release();

    /// <summary>The index of the current weights (trainable tensors only: the full policy, or LoRA adapters).</summary>
    [ResponseTimeout("00:10:00")]
    Task<WeightsManifest> GetWeights();

    /// <summary>One chunk of version <paramref name="version"/>; fails if that version is no longer the current one.</summary>
    /// <remarks>Interleaves: it only reads the immutable published snapshot, so several chunks can be in flight.</remarks>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<byte[]> GetWeightsChunk(long version, int index);
}
