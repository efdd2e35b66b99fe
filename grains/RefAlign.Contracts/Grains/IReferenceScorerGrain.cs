using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// Frozen-reference log-probs (key: "run/shard"), plain and prompted, through the run's cache. Disposable: a scorer
/// re-placed after its silo was lost initializes itself from the run's config on its first request.
/// </summary>
public interface IReferenceScorerGrain : IGrainWithStringKey
{
    [ResponseTimeout("00:15:00")]
    Task Initialize(string configJson);

    [ResponseTimeout("00:30:00")]
    Task<ReferenceReply> Score(IReadOnlyList<PreferencePairMessage> pairs, bool prompted);

    /// <summary>Reference model passes run so far (the cache makes repeats free).</summary>
    Task<int> ModelPasses();

    /// <summary>
    /// The silo this activation runs on (parsable form), answered while a score runs. The cluster view asks: a directory
    /// lookup reads the asking silo's cache, which still names the old silo after a move until a call goes there.
    /// </summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<string> Silo();

    /// <summary>Lets the activation go (it is re-placed on its next request).</summary>
    Task Release();

    /// <summary>
    /// Moves the shard to <paramref name="silo"/> once idle (live migration: the grain directory is updated atomically,
    /// so every caller's next request reaches it there; it reloads its model from the run's config).
    /// </summary>
    Task MoveTo(SiloAddress silo);
}

/// <summary>A shard's reference log-probs, one per pair in order, and the silo that computed them.</summary>
[GenerateSerializer, Immutable]
public sealed record ReferenceReply(
    [property: Id(0)] IReadOnlyList<ReferenceLogProbsMessage> Values,
    [property: Id(1)] string Silo);
