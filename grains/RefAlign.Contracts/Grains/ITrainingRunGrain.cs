using Orleans.Concurrency;
using RefAlign.Contracts.Control;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// A run (key: run id): owns its config and durable state, drives the loop, and answers queries while a step is in
/// flight (queries and stop interleave with the running loop). A supervision reminder restarts its loop wherever the
/// grain lands after a silo loss.
/// </summary>
public interface ITrainingRunGrain : IGrainWithStringKey
{
    /// <summary>Starts the run with an already validated config; starting a started run is a no-op.</summary>
    Task<RunSummary> Start(string configJson);

    [AlwaysInterleave]
    Task<RunSummary> GetSummary();

    /// <summary>
    /// Events with sequence greater than <paramref name="afterSequence"/> (at most <paramref name="max"/>); throws
    /// <see cref="RunEventsTrimmedException"/> when some of them are older than the bounded log keeps.
    /// </summary>
    [AlwaysInterleave]
    Task<IReadOnlyList<RunEvent>> GetEvents(long afterSequence, int max);

    /// <summary>Pushes every event appended from now on to <paramref name="observer"/>; renew within a minute or it lapses.</summary>
    [AlwaysInterleave]
    Task Subscribe(IRunEventObserver observer);

    [AlwaysInterleave]
    Task Unsubscribe(IRunEventObserver observer);

    /// <summary>Asks the loop to stop after the current step (which is kept and checkpointed).</summary>
    [AlwaysInterleave]
    Task<RunSummary> Stop();

    /// <summary>Continues a stopped or failed run from its latest checkpoint.</summary>
    Task<RunSummary> Resume();

    /// <summary>This run's shard workers (for cluster views): generators or reference scorers, by grain key.</summary>
    [AlwaysInterleave]
    Task<IReadOnlyList<RunWorker>> Workers();
}

/// <summary>A shard worker of a run: <see cref="Kind"/> is <c>generator</c> or <c>reference</c>.</summary>
[GenerateSerializer, Immutable]
public sealed record RunWorker([property: Id(0)] string Kind, [property: Id(1)] string GrainKey);
