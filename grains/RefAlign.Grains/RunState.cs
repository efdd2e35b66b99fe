using RefAlign.Contracts.Control;

namespace RefAlign.Grains;

/// <summary>A run's durable state: what survives a silo restart (the loop resumes from the latest checkpoint).</summary>
[GenerateSerializer]
public sealed class RunState
{
    [Id(0)] public RunStatus Status { get; set; } = RunStatus.Pending;
    [Id(1)] public string ConfigJson { get; set; } = "";
    [Id(2)] public string Name { get; set; } = "";
    [Id(3)] public string Algorithm { get; set; } = "";
    [Id(4)] public int Step { get; set; }
    [Id(5)] public int TotalSteps { get; set; }
    [Id(6)] public long WeightVersion { get; set; }
    [Id(7)] public string? LatestCheckpoint { get; set; }
    [Id(8)] public DateTimeOffset CreatedAt { get; set; }
    [Id(9)] public string? Error { get; set; }
    [Id(10)] public Dictionary<string, double> LastMetrics { get; set; } = [];
    /// <summary>The newest events (a bounded tail), so a watcher attaching after a restart still sees recent history.</summary>
    [Id(11)] public List<RunEvent> Events { get; set; } = [];
    [Id(12)] public long NextSequence { get; set; } = 1;
}
