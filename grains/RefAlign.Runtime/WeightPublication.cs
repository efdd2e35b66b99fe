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
    /// The <see cref="WeightDigest"/> of <paramref name="data"/>'s first <paramref name="length"/> bytes: each block is
    /// hashed on the thread pool as soon as it is filled, beside the others and the receive, so the digest is ready right
    /// after the last byte arrives instead of a pass later, and no one core bounds it.
    /// </summary>
    public async Task<string> DigestAsync(byte[] data, long length, CancellationToken cancellation)
    {
        var blocks = new byte[WeightDigest.BlockCount(length)][];
        var hashing = new List<Task>(blocks.Length);
        try
        {
            for (var i = 0; i < blocks.Length; i++)
            {
                var end = Math.Min(length, (long)(i + 1) * WeightDigest.BlockBytes);
                await WaitBeyondAsync(end - 1, cancellation);
                var block = i;
                hashing.Add(Task.Run(() => blocks[block] = WeightDigest.OfBlock(data, length, block), CancellationToken.None));
            }
        }
        finally
        {
            // The caller may reuse the buffer once this returns: no block task may still read it then.
            await Task.WhenAll(hashing).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        await Task.WhenAll(hashing);
        return WeightDigest.Root(blocks, length);
    }
}

/// <summary>
/// One version of a run's weights in a silo's exchange: published whole by the learner, or relayed — filled while it
/// arrives from upstream and served onward as it fills. <see cref="Snapshot"/> is set once the bytes are complete (and,
/// for a relay, verified).
/// </summary>
/// <remarks>
/// Its buffer is reused for a later version once nobody reads it: each reader (the exchange's registry, a stream being
/// served, a replica applying the bytes, a fill in progress) takes a hold, and the last <see cref="Release"/> hands the
/// buffer to <paramref name="freed"/>. It starts with one hold, its creator's.
/// </remarks>
public sealed class WeightPublication(string token, byte[] data, WeightSnapshot? snapshot, Action<byte[]>? freed = null)
{
    readonly Lock _gate = new();
    int _holds = 1;
    int _served;

    public string Token { get; } = token;
    public byte[] Data { get; } = data;
    public long TotalBytes => Data.LongLength;
    public FillProgress Progress { get; } = new();
    public WeightSnapshot? Snapshot { get; private set; } = snapshot;

    /// <summary>Requests the server answered with this publication (a learner's relayed version: one).</summary>
    public int TimesServed => Volatile.Read(ref _served);

    internal void CountServed() => Interlocked.Increment(ref _served);

    /// <summary>Another reader of the buffer; false once the last hold was released (the buffer may be reused).</summary>
    public bool TryHold()
    {
        lock (_gate)
        {
            if (_holds == 0) return false;
            _holds++;
            return true;
        }
    }

    /// <summary>Ends one hold; the last one frees the buffer for reuse.</summary>
    public void Release()
    {
        lock (_gate)
        {
            if (_holds == 0) throw new InvalidOperationException("a weight publication was released more often than held.");
            if (--_holds > 0) return;
        }
        freed?.Invoke(Data);
    }

    /// <summary>The relayed bytes are complete and verified.</summary>
    public void Complete(WeightSnapshot snapshot)
    {
        Snapshot = snapshot;
        Progress.Advance(TotalBytes);
    }

    internal static WeightPublication Whole(string token, WeightSnapshot snapshot, Action<byte[]>? freed)
    {
        var p = new WeightPublication(token, snapshot.Data, snapshot, freed);
        p.Progress.Advance(snapshot.TotalBytes);
        return p;
    }
}
