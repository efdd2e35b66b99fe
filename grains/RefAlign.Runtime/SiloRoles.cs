namespace RefAlign.Runtime;

/// <summary>Roles a silo can take; a silo lists its roles in configuration and publishes them as silo metadata.</summary>
public static class SiloRoles
{
    public const string Generator = "generator";
    public const string Scorer = "scorer";
    public const string Reference = "reference";
    public const string Learner = "learner";

    /// <summary>Every known role, in a stable order.</summary>
    public static IReadOnlyList<string> All { get; } = [Generator, Scorer, Reference, Learner];

    public static bool IsKnown(string role) => All.Contains(role, StringComparer.Ordinal);
}

/// <summary>Keys of the Orleans silo metadata that RefAlign publishes (<c>UseSiloMetadata</c>).</summary>
public static class SiloMetadataKeys
{
    /// <summary>Comma-separated roles, e.g. <c>learner,scorer</c>.</summary>
    public const string Roles = "refalign.roles";

    /// <summary>Compute device, <c>cpu</c> or <c>cuda:N</c>.</summary>
    public const string Device = "refalign.device";

    /// <summary>What the silo's libtorch drives: <c>cpu</c> or <c>cuda (N devices)</c>.</summary>
    public const string Libtorch = "refalign.libtorch";

    /// <summary>Number of dedicated compute threads.</summary>
    public const string ComputeThreads = "refalign.compute_threads";

    /// <summary>Memory the silo's process may use, in bytes (what admission compares a run's estimate with).</summary>
    public const string MemoryBytes = "refalign.memory_bytes";

    /// <summary>Parses the <see cref="Roles"/> value (comma or semicolon separated, case-insensitive).</summary>
    public static IReadOnlyList<string> ParseRoles(string? value) =>
        string.IsNullOrWhiteSpace(value)
            ? []
            : value.Split([',', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(r => r.ToLowerInvariant())
                .Distinct(StringComparer.Ordinal)
                .ToArray();

    /// <summary>True for a device other than the CPU (an accelerator).</summary>
    public static bool IsAccelerator(string? device) =>
        !string.IsNullOrWhiteSpace(device) && !device.Trim().Equals("cpu", StringComparison.OrdinalIgnoreCase);
}
