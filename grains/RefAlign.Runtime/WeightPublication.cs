using RefAlign.Compute.Formats;

namespace RefAlign.Runtime;

/// <summary>
/// How far a buffer has been filled, for readers that follow a writer: the exchange's server streams a relayed
/// publication while it arrives, and the receiver hashes the bytes already in while later ones are still on the wire.
/// </summary>
public sealed class FillProgress
{
    readonly Lock _gate = new();
    TaskCompletionSource _moved = new(TaskCreationOptions.RunContinuationsAsynchronously);
    long _filled;
    bool _failed;

    public long Filled => Volatile.Read(ref _filled);

    /// <summary>Records that the first <paramref name="filled"/> bytes are in (never moves back).</summary>
    public void Advance(long filled)
    {
        TaskCompletionSource moved;
        lock (_gate)
        {
            if (filled <= _filled) return;
            _filled = filled;
            (moved, _moved) = (_moved, new(TaskCreationOptions.RunContinuationsAsynchronously));
        }
        moved.TrySetResult();
    }

    /// <summary>The fill stopped for good: waiting readers get an <see cref="IOException"/>.</summary>
    public void Fail()
    {
        TaskCompletionSource moved;
        lock (_gate)
        {
            _failed = true;
            moved = _moved;
        }
        moved.TrySetResult();
    }

    /// <summary>Waits until more than <paramref name="offset"/> bytes are in; returns how many.</summary>
    public async Task<long> WaitBeyondAsync(long offset, CancellationToken cancellation)
    {
        while (true)
        {
            Task moved;
            lock (_gate)
            {
                if (_filled > offset) return _filled;
                if (_failed) throw new IOException("the publication's upstream failed before it was complete.");
                moved = _moved.Task;
            }
            await moved.WaitAsync(cancellation);
        }
    }

    /// <summary>
    /// The <see cref="WeightDigest"/> of <paramref name="data"/>'s first <paramref name="length"/> bytes, hashed slice by
    /// slice as they are filled, so the digest is ready right after the last byte arrives instead of a whole pass later.
    /// </summary>
    public async Task<string> DigestAsync(byte[] data, long length, CancellationToken cancellation)
    {
        var digest = new WeightDigest();
        for (long at = 0; at < length;)
        {
            var filled = Math.Min(length, await WaitBeyondAsync(at, cancellation));
            digest.Append(data.AsSpan((int)at, (int)(filled - at)));
            at = filled;
        }
        return digest.Current();
    }
}

/// <summary>
/// One version of a run's weights in a silo's exchange: published whole by the learner, or relayed — filled while it
/// arrives from upstream and served onward as it fills. <see cref="Snapshot"/> is set once the bytes are complete (and,
/// for a relay, verified).
/// </summary>
public sealed class WeightPublication(string token, byte[] data, WeightSnapshot? snapshot)
{
    int _served;

    public string Token { get; } = token;
    public byte[] Data { get; } = data;
    public long TotalBytes => Data.LongLength;
    public FillProgress Progress { get; } = new();
    public WeightSnapshot? Snapshot { get; private set; } = snapshot;

    /// <summary>Requests the server answered with this publication (a learner's relayed version: one).</summary>
    public int TimesServed => Volatile.Read(ref _served);

    internal void CountServed() => Interlocked.Increment(ref _served);

    /// <summary>The relayed bytes are complete and verified.</summary>
    public void Complete(WeightSnapshot snapshot)
    {
        Snapshot = snapshot;
        Progress.Advance(TotalBytes);
    }

    internal static WeightPublication Whole(string token, WeightSnapshot snapshot)
    {
        var p = new WeightPublication(token, snapshot.Data, snapshot);
        p.Progress.Advance(snapshot.TotalBytes);
        return p;
    }
}
