using RefAlign.Contracts.Control;

namespace RefAlign.Grains;

/// <summary>
/// The control surface behind the gRPC service: start, watch and steer runs, inspect the cluster. The silo implements
/// it over grains; the gRPC layer only maps messages and errors.
/// </summary>
public interface IRunControl
{
    /// <summary>Validates and starts a run; throws <c>InvalidRunConfigException</c> (with the field) for a bad config.</summary>
    Task<string> StartRunAsync(string configJson, CancellationToken cancellation = default);

    /// <summary>Throws <see cref="RunNotFoundException"/> for an unknown id.</summary>
    Task<RunSummary> GetRunAsync(string runId, CancellationToken cancellation = default);

    Task StopRunAsync(string runId, CancellationToken cancellation = default);

    Task ResumeRunAsync(string runId, CancellationToken cancellation = default);

    Task<IReadOnlyList<RunSummary>> ListRunsAsync(CancellationToken cancellation = default);

    /// <summary>Events with sequence &gt; <paramref name="afterSequence"/>, then live ones until the run ends or the caller cancels.</summary>
    IAsyncEnumerable<RunEvent> WatchRunAsync(string runId, long afterSequence, CancellationToken cancellation = default);

    /// <summary>
    /// Evaluates a finished run's models through the cluster: progress updates, the last one with the result. Throws
    /// <c>InvalidRunConfigException</c> (with the request field) for bad settings, <see cref="InvalidOperationException"/>
    /// for a run that is still running or an evaluation that failed.
    /// </summary>
    IAsyncEnumerable<RunEvalProgress> EvaluateRunAsync(RunEvalRequest request, CancellationToken cancellation = default);

    Task<ClusterInfo> GetClusterAsync(CancellationToken cancellation = default);
}
