namespace RefAlign.Client;

/// <summary>Lifecycle of a run.</summary>
public enum RunStatus
{
    Pending,
    Running,
    Stopping,
    Stopped,
    Completed,
    Failed,
}

public static class RunStatuses
{
    /// <summary>Stopped, completed or failed: nothing more happens unless the run is resumed.</summary>
    public static bool IsFinal(this RunStatus s) => s is RunStatus.Stopped or RunStatus.Completed or RunStatus.Failed;
}

/// <summary>Kinds of <see cref="RunEvent"/>.</summary>
public enum RunEventKind
{
    Status,
    Step,
    Phase,
    Eval,
    Checkpoint,
}

/// <summary>A run as <c>GetRun</c>/<c>ListRuns</c> report it.</summary>
public sealed record RunSummary(
    string RunId,
    string Name,
    string Algorithm,
    RunStatus Status,
    int Step,
    int TotalSteps,
    long WeightVersion,
    string? LatestCheckpoint,
    DateTimeOffset CreatedAt,
    string? Error,
    IReadOnlyDictionary<string, double> LastMetrics,
    string ConfigJson);

/// <summary>One entry of a run's event log, numbered from 1 without gaps.</summary>
public sealed record RunEvent(
    string RunId,
    long Sequence,
    RunEventKind Kind,
    int Step,
    DateTimeOffset Time,
    RunStatus Status,
    IReadOnlyDictionary<string, double> Metrics,
    string? Phase = null,
    double? PhaseSeconds = null,
    string? Message = null);

/// <summary>One silo: address, name, roles, device, membership status and active grains.</summary>
public sealed record SiloInfo(string Address, string Name, IReadOnlyList<string> Roles, string Device, string Status, int ActiveGrains, string Libtorch = "");

/// <summary>A rollout generator shard, the policy weight version it holds and the silo it lives on.</summary>
public sealed record GeneratorInfo(string GrainId, string RunId, long WeightVersion, string Silo);

/// <summary>Where a grain of a running run lives: <see cref="Kind"/> is run, learner, generator or reference.</summary>
public sealed record PlacementInfo(string Kind, string GrainKey, string RunId, string Silo, long WeightVersion);

public sealed record ClusterInfo(IReadOnlyList<SiloInfo> Silos, IReadOnlyList<GeneratorInfo> Generators, IReadOnlyList<PlacementInfo> Placements);

/// <summary>
/// What <c>EvaluateRun</c> asks: the run's models (<c>base</c>, <c>latest</c> or <c>step-N</c>; the first is the baseline
/// of win rates; none: <c>latest</c>) and the evaluation settings (null: the run's or the server's defaults).
/// </summary>
public sealed record RunEvalRequest(string RunId, IReadOnlyList<string> Models, int? Examples = null, int? NumSamples = null,
    long? Seed = null, double? CorrectThreshold = null, int? Bootstrap = null);

/// <summary>Progress of an evaluation (model <see cref="ModelIndex"/> of <see cref="Models"/>); the last one carries the result.</summary>
public sealed record RunEvalUpdate(string Model, int ModelIndex, int Models, int Done, int Total, RunEvalResult? Result);

public sealed record RunEvalResult(IReadOnlyList<RunModelEvaluation> Models, IReadOnlyList<RunSideBySide> SideBySide);

/// <summary>A model's metrics, its samples (RefAlign data) and the bootstrap interval of its mean BERTScore F1.</summary>
public sealed record RunModelEvaluation(string Model, string Path, IReadOnlyDictionary<string, double> Metrics,
    IReadOnlyList<RunEvalSample> Samples, double? F1Low, double? F1High, IReadOnlyList<string> Notes);

public sealed record RunEvalSample(int PromptId, int Sample, bool Harmful, string Answer, double? Confidence, double F1, bool Correct,
    double Reward, int Length);

/// <summary>Model B against model A: win rate over prompts (ties ½) with its bootstrap 95 % interval.</summary>
public sealed record RunSideBySide(string ModelA, string ModelB, double WinRate, double Low, double High, int Wins, int Ties, int Losses);
