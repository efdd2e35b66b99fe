using RefAlign.Compute.Training;

namespace RefAlign.Grains;

/// <summary>What a silo tells the grains about where runs live and how they are kept (from the <c>Silo:</c> settings).</summary>
public sealed record RunHostOptions
{
    public const int DefaultEventLogCapacity = 4096;

    /// <summary>
    /// Where remote run configs may read models, encoders and data (<c>Silo:DataRoots</c>); relative paths resolve under
    /// the first, never under a project or build folder.
    /// </summary>
    public IReadOnlyList<string> DataRoots { get; init; } = [Directory.GetCurrentDirectory()];

    /// <summary>The only place runs write (<c>Silo:OutputRoot</c>): outputs, caches, logs; relative <c>output_dir</c> resolves under it.</summary>
    public string OutputRoot { get; init; } = Directory.GetCurrentDirectory();

    /// <summary>What one request may ask for.</summary>
    public RunLimits Limits { get; init; } = new();

    /// <summary>Shared by every learner silo (<c>Silo:CheckpointRoot</c>); null: each run's <c>output_dir/checkpoints</c>.</summary>
    public string? CheckpointRoot { get; init; }

    /// <summary>Events each run keeps in memory for watchers; older ones are trimmed.</summary>
    public int EventLogCapacity { get; init; } = DefaultEventLogCapacity;

    /// <summary>Every timeout, backoff and retry budget of the run core (<c>Timing:</c>).</summary>
    public RunTimings Timings { get; init; } = new();

    /// <summary>The cluster's artifacts: under the output root, which the silos running the work share.</summary>
    public Artifacts.ArtifactStore Artifacts() =>
        new(Path.Combine(OutputRoot, "artifacts"), Limits.MaxArtifactBytes, Limits.MaxArtifactStoreBytes, Limits.MaxPendingPushes,
            TimeSpan.FromSeconds(Limits.PendingPushExpirySeconds));

    /// <summary>Every folder runs may read (data, output, checkpoint and artifact roots): what a silo confines its reads to.</summary>
    public IReadOnlyList<string> ReadRoots => [.. DataRoots, OutputRoot, .. CheckpointRoot is { } c ? [c] : Array.Empty<string>()];

    /// <summary>The folder a run's learner checkpoints into.</summary>
    public string CheckpointFolder(string runId, RunConfig config) =>
        CheckpointRoot is { } root ? Path.Combine(root, runId) : Path.Combine(config.OutputDir, "checkpoints");
}
