namespace RefAlign.Contracts.Control;

/// <summary>What <c>GetRun</c>/<c>ListRuns</c> report about a run.</summary>
[GenerateSerializer, Immutable]
public sealed record RunSummary(
    [property: Id(0)] string RunId,
    [property: Id(1)] string Name,
    [property: Id(2)] string Algorithm,
    [property: Id(3)] RunStatus Status,
    [property: Id(4)] int Step,
    [property: Id(5)] int TotalSteps,
    [property: Id(6)] long WeightVersion,
    [property: Id(7)] string? LatestCheckpoint,
    [property: Id(8)] DateTimeOffset CreatedAt,
    [property: Id(9)] string? Error,
    [property: Id(10)] IReadOnlyDictionary<string, double> LastMetrics,
    [property: Id(11)] string ConfigJson);
