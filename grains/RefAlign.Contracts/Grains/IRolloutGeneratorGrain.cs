using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// A policy replica (key: "run/shard") that samples K responses per prompt for its shard. It refuses to sample with a
/// version older than the request allows: it first fetches the learner's newer weights. Disposable: a replica re-placed
/// after its silo was lost initializes itself from the run's config on its first request.
/// </summary>
public interface IRolloutGeneratorGrain : IGrainWithStringKey
{
    [ResponseTimeout("00:15:00")]
    Task Initialize(string configJson);

    [ResponseTimeout("00:30:00")]
    Task<GenerateReply> Generate(GenerateRequest request);

    /// <summary>
    /// Loads the run's model (first call) and exactly weight version <paramref name="version"/> of the learner of
    /// <paramref name="runId"/> (−1: none; a no-op when held); returns the replica's silo.
    /// </summary>
    [ResponseTimeout("00:10:00")]
    Task<string> SyncTo(string runId, int step, long version);

    /// <summary>Sr-*'s prompted no-grad pass over a step's pairs at the request's exact weight version (it syncs first if needed, from the request's manifest).</summary>
    [ResponseTimeout("00:10:00")]
    Task<PromptedPassReply> ScorePrompted(PromptedPassRequest request);

    /// <summary>A read of one field: answered while a generation runs, so cluster views never wait on busy generators.</summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<long> WeightVersion();

    /// <summary>Lets the activation go (it is re-placed on its next request, e.g. on a silo that just joined).</summary>
    Task Release();

    /// <summary>
    /// Moves the shard to <paramref name="silo"/> once idle (live migration: the grain directory is updated atomically,
    /// so every caller's next request reaches it there; it reloads its model from the run's config).
    /// </summary>
    Task MoveTo(SiloAddress silo);
}
