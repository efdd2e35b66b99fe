namespace RefAlign.Contracts.Control;

/// <summary>Kinds of <see cref="RunEvent"/>.</summary>
public enum RunEventKind
{
    Status = 0,
    Step = 1,
    Phase = 2,
    Eval = 3,
    Checkpoint = 4,
}

/// <summary>
/// One entry of a run's event log, numbered by <see cref="Sequence"/> from 1, so a watcher that reconnects asks
/// for everything after the last sequence it saw and misses nothing.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record RunEvent(
    [property: Id(0)] string RunId,
    [property: Id(1)] long Sequence,
    [property: Id(2)] RunEventKind Kind,
    [property: Id(3)] int Step,
    [property: Id(4)] DateTimeOffset Time,
    [property: Id(5)] RunStatus Status,
    [property: Id(6)] IReadOnlyDictionary<string, double> Metrics,
    [property: Id(7)] string? Phase = null,
    [property: Id(8)] double? PhaseSeconds = null,
    [property: Id(9)] string? Message = null);
