namespace RefAlign.Runtime;

/// <summary>
/// Set when the silo starts draining (SIGTERM): grains finish what they are doing and refuse new work with
/// <see cref="SiloDrainingException"/>, which callers retry on another silo once this one has left.
/// </summary>
public sealed class SiloDrain
{
    volatile bool _draining;

    public bool IsDraining => _draining;

    public void Begin() => _draining = true;

    /// <summary>Throws <see cref="SiloDrainingException"/> while draining.</summary>
    public void ThrowIfDraining(string what)
    {
        if (_draining) throw new SiloDrainingException(what);
    }
}

/// <summary>A grain refused new work because its silo is shutting down; retry (it is re-placed once the silo has left).</summary>
[GenerateSerializer]
public sealed class SiloDrainingException(string what) : Exception($"{what}: its silo is shutting down; retry.");
