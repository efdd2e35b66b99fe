using RefAlign.Contracts.Control;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// The cluster's list of runs (a single activation, key 0), persisted so <c>ListRuns</c> survives restarts. It also
/// keeps the final summary of each run that has ended, so listing runs never wakes (or waits on) an ended run's grain.
/// </summary>
public interface IRunRegistryGrain : IGrainWithIntegerKey
{
    Task Add(string runId);

    Task<IReadOnlyList<string>> List();

    /// <summary>Every run id, with the final summaries of the runs that have ended.</summary>
    Task<RunRegistryView> View();

    /// <summary>
    /// A run says whether it has ended: its final summary, or null while it runs (again). <paramref name="sequence"/> is
    /// the run's next event sequence; a report older than the newest one taken is dropped, so a late "ended" cannot
    /// hide a resume.
    /// </summary>
    Task Report(string runId, long sequence, RunSummary? ended);
}

/// <summary>The registry's runs: ids in start order, and the summaries of those that have ended, by id.</summary>
[GenerateSerializer, Immutable]
public sealed record RunRegistryView(
    [property: Id(0)] IReadOnlyList<string> RunIds,
    [property: Id(1)] IReadOnlyDictionary<string, RunSummary> Ended);
