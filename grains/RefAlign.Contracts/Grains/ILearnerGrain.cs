using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// The run's learner (key: run id), placed on a learner/GPU silo: the only owner of the optimizer and the only writer
/// of weights. Steps are idempotent by number; each applied step publishes a new weight version.
/// </summary>
public interface ILearnerGrain : IGrainWithStringKey
{
    /// <summary>
    /// Loads the policy (minutes for a 7B model, so the call gets a long timeout) and takes <paramref name="epoch"/>, which
    /// the run raises for each attempt: checkpoints, journal entries and weight publications carry it, and once a newer
    /// epoch owns the run's checkpoint folder this activation writes nothing more. Returns where the learner lives.
    /// </summary>
    [ResponseTimeout("00:15:00")]
    Task<LearnerLease> Initialize(string configJson, int totalSteps, int stepsPerEpoch, long epoch);

    /// <summary>
    /// Where training continues: this activation's own position when it has trained or restored already (its weights are
    /// live) unless <paramref name="fromCheckpoint"/>, else the latest checkpoint restored from the checkpoint root
    /// (no checkpoint: start from the model folder), with the rollouts a pipelined run had prefetched for its next step.
    /// </summary>
    [ResponseTimeout("00:30:00")]
    Task<ResumePoint> Resume(bool fromCheckpoint);

    /// <summary>Checkpoints at once if steps were applied since the last checkpoint, then refuses new steps (silo shutdown).</summary>
    [ResponseTimeout("00:30:00")]
    Task Drain();

    [ResponseTimeout("00:30:00")]
    Task<StepResultMessage> LearnRefAlign(int step, IReadOnlyList<RolloutRowMessage> rows);

    /// <summary>
    /// A preference step. With <paramref name="promptedOffered"/> (Sr-* only), the learner runs its first plain pass and
    /// then waits for <see cref="OfferPrompted"/> to bring the prompted log-probs a replica computed at this version; a
    /// reply that is missing, late or of another version makes it compute them itself (the loss is the same).
    /// </summary>
    [ResponseTimeout("00:30:00")]
    Task<StepResultMessage> LearnPreference(int step, IReadOnlyList<PreferenceRowMessage> rows, bool promptedOffered);

    /// <summary>
    /// Hands step <paramref name="step"/> the prompted log-probs of a replica (null: the replica failed, compute them
    /// here). Interleaves: it arrives while <see cref="LearnPreference"/> runs and only completes what that step awaits.
    /// </summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task OfferPrompted(int step, PromptedPassReply? values);

    [ResponseTimeout("00:30:00")]
    Task<StepResultMessage> LearnSft(int step, IReadOnlyList<SftSequenceMessage> rows);

    [ResponseTimeout("00:30:00")]
    Task<IReadOnlyDictionary<string, double>> EvaluateSft(IReadOnlyList<SftSequenceMessage> rows);

    [ResponseTimeout("00:30:00")]
    Task<IReadOnlyDictionary<string, double>> EvaluatePreference(IReadOnlyList<PreferenceRowMessage> rows);

    /// <summary>Saves a checkpoint (with a pipelined run's prefetched rollouts of the next step, when given); returns its folder.</summary>
    [ResponseTimeout("00:30:00")]
    Task<string> Checkpoint(CheckpointMessage manifest, IReadOnlyList<RolloutMessage>? prefetch);

    /// <summary>The version last published; answered while a step runs, so cluster views never wait on the learner.</summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<long> WeightVersion();

    /// <summary>Frees the learner's memory once its run has ended (the state is in the checkpoints).</summary>
    Task Release();

    /// <summary>Frees the learner's memory now: an evaluation's learner, whose weights are only read.</summary>
    Task Unload();

    /// <summary>
    /// Loads the trainable tensors of a checkpoint folder (LoRA adapters or the full policy) for an evaluation and
    /// publishes them as a new weight version, which it returns, so the shard workers fetch them.
    /// </summary>
    [ResponseTimeout("00:15:00")]
    Task<long> LoadWeights(string checkpointFolder);

    /// <summary>
    /// The index of weight version <paramref name="version"/> (−1: the current one) — trainable tensors only: the full
    /// policy, or the LoRA adapters. The learner keeps the version before its current one too, which is what a pipelined
    /// run's generators sample with while it applies a step; an older one throws <see cref="WeightVersionGoneException"/>.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<WeightsManifest> GetWeights(long version);

    /// <summary>
    /// Adds a generator silo that serves version <paramref name="version"/> onward at <paramref name="relayAddress"/> to
    /// the version's relay chain and returns where that silo should fetch it: the previous silo in the chain, or the
    /// learner's own stream for the first; so the learner sends each version once however many silos sync. Null when the
    /// version is not (or no longer) published by stream.
    /// </summary>
    /// <remarks>Interleaves (no await inside): a generator joining the chain does not wait behind a learning step.</remarks>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<string?> JoinRelay(long version, string relayAddress);

    /// <summary>One chunk of version <paramref name="version"/>; fails if that version is no longer kept.</summary>
    /// <remarks>Interleaves: it only reads the immutable published snapshot, so several chunks can be in flight.</remarks>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<byte[]> GetWeightsChunk(long version, int index);
}

/// <summary>
/// Where a run continues: the learner's position (null: the model folder, step 0), the rollouts a pipelined run had
/// sampled for that step with the previous weights (saved with the checkpoint, so the resume is exact), and for a live
/// learner the results of the steps it applied most recently (a step whose reply was lost is still reported).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record ResumePoint(
    [property: Id(0)] CheckpointMessage? Position,
    [property: Id(1)] IReadOnlyList<RolloutMessage>? Prefetch = null,
    [property: Id(2)] IReadOnlyList<StepResultMessage>? RecentlyApplied = null);

/// <summary>The learner's silo (parsable address) and the epoch it holds for its run.</summary>
[GenerateSerializer, Immutable]
public sealed record LearnerLease([property: Id(0)] string Silo, [property: Id(1)] long Epoch);

/// <summary>The learner no longer keeps (or never reached) the weight version asked for.</summary>
[GenerateSerializer]
public sealed class WeightVersionGoneException(string runId, long version, long current)
    : Exception($"learner {runId} does not hold weight version {version} (current: {current}).")
{
    [Id(0)] public long Version { get; } = version;

    [Id(1)] public long Current { get; } = current;
}
