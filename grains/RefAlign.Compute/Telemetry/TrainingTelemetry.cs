using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RefAlign.Compute.Telemetry;

/// <summary>
/// The one <see cref="ActivitySource"/> and <see cref="Meter"/> named "RefAlign.Training". Compute, grains and the
/// trainer emit through these; both cost nothing until a listener (the silo's OpenTelemetry setup) subscribes.
/// </summary>
public static class TrainingTelemetry
{
    public const string Name = "RefAlign.Training";

    public static ActivitySource Source { get; } = new(Name, Version);

    public static Meter Meter { get; } = new(Name, Version);

    /// <summary>Wall time of a whole training step, seconds.</summary>
    public static Histogram<double> StepDuration { get; } =
        Meter.CreateHistogram<double>("refalign.step.duration", "s", "Wall time of one training step");

    /// <summary>Wall time of one phase of a step (tagged with <see cref="Tags.Phase"/>), seconds.</summary>
    public static Histogram<double> PhaseDuration { get; } =
        Meter.CreateHistogram<double>("refalign.phase.duration", "s", "Wall time of one phase of a step");

    /// <summary>Generated or processed tokens per second over a step or phase.</summary>
    public static Histogram<double> TokensPerSecond { get; } =
        Meter.CreateHistogram<double>("refalign.tokens_per_second", "{token}/s", "Tokens per second");

    /// <summary>Mean reward of a step's samples.</summary>
    public static Histogram<double> Reward { get; } =
        Meter.CreateHistogram<double>("refalign.reward", null, "Mean reward per step");

    /// <summary>Training loss of a step.</summary>
    public static Histogram<double> Loss { get; } =
        Meter.CreateHistogram<double>("refalign.loss", null, "Loss per step");

    /// <summary>Weight versions between the policy that generated a batch and the one that learns from it.</summary>
    public static Histogram<long> Staleness { get; } =
        Meter.CreateHistogram<long>("refalign.staleness", "{version}", "Policy staleness of a learned batch");

    /// <summary>Bytes of batches and weights moved between grains.</summary>
    public static Counter<long> BatchBytesMoved { get; } =
        Meter.CreateCounter<long>("refalign.batch.bytes_moved", "By", "Bytes of batches and weights moved");

    /// <summary>
    /// A run's failed attempts (each one is restarted with backoff until <c>distributed.max_restarts</c> in a row),
    /// tagged with <see cref="Tags.Reason"/>, the fault's kind: <c>silo_lost</c>, <c>stalled</c>, <c>transient</c> or <c>fatal</c>.
    /// </summary>
    public static Counter<long> FailedAttempts { get; } =
        Meter.CreateCounter<long>("refalign.run.failed_attempts", "{attempt}", "Failed attempts of a run, by reason");

    private static string Version => typeof(TrainingTelemetry).Assembly.GetName().Version?.ToString() ?? "0.0.0";

    /// <summary>Starts a phase span with the run attributes set (null when nobody listens).</summary>
    public static Activity? StartPhase(string phase, string runId, long step, long weightVersion, ActivityKind kind = ActivityKind.Internal)
    {
        var activity = Source.StartActivity(phase, kind);
        activity?.SetTag(Tags.RunId, runId)
            .SetTag(Tags.Step, step)
            .SetTag(Tags.WeightVersion, weightVersion)
            .SetTag(Tags.Phase, phase);
        return activity;
    }

    /// <summary>Span and metric attribute names.</summary>
    public static class Tags
    {
        public const string RunId = "refalign.run_id";
        public const string Step = "refalign.step";
        public const string WeightVersion = "refalign.weight_version";
        public const string Phase = "refalign.phase";
        public const string Shard = "refalign.shard";
        public const string Reason = "refalign.reason";
    }

    /// <summary>Phase names used as span names and <see cref="Tags.Phase"/> values.</summary>
    public static class Phases
    {
        public const string Step = "step";
        public const string Generate = "generate";
        public const string Score = "score";
        public const string Reference = "reference";
        public const string Learn = "learn";
        public const string WeightSync = "weight_sync";
        public const string Checkpoint = "checkpoint";
        public const string Eval = "eval";
    }
}
