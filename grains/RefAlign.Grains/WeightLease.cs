using RefAlign.Compute.Formats;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// A replica's read of one weight version (<see cref="ReplicaWeights.GetAsync"/>): the silo does not reuse its buffer
/// for a later version until the lease is disposed, so apply the bytes first.
/// </summary>
public sealed class WeightLease(WeightSnapshot snapshot, WeightPublication? held) : IDisposable
{
    int _disposed;

    public WeightSnapshot Snapshot { get; } = snapshot;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) held?.Release();
    }
}
