namespace RefAlign.Contracts.Control;

/// <summary>
/// A watcher asked for events the run's bounded log no longer keeps; <see cref="OldestSequence"/> is the oldest one kept.
/// </summary>
[GenerateSerializer]
public sealed class RunEventsTrimmedException(string runId, long oldestSequence)
    : Exception($"run '{runId}' keeps events from sequence {oldestSequence} on; ask for after_sequence ≥ {oldestSequence - 1}.")
{
    [Id(0)] public string RunId { get; } = runId;

    [Id(1)] public long OldestSequence { get; } = oldestSequence;
}
