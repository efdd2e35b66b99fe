namespace RefAlign.Runtime;

/// <summary>
/// A silo's spare weight buffers, reused from one version to the next. A fresh array of tens of megabytes costs a page
/// fault per page on its first write, which halves a socket receive's rate and lengthens a learner's capture; a reused
/// one is already resident (docs/architecture.md §2, "weight buffers"). Only exact sizes are reused (one run's weights
/// are one size), and at most <see cref="MaxSpares"/> are kept, so the pool never holds more than two versions' worth.
/// </summary>
/// <remarks>
/// A buffer comes back only through <see cref="WeightPublication.Release"/> once nothing reads it any more; a buffer
/// that is never returned is simply collected.
/// </remarks>
public sealed class WeightBuffers
{
    public const int MaxSpares = 2;
    readonly Lock _gate = new();
    readonly List<byte[]> _spares = [];

    /// <summary>A spare of exactly <paramref name="bytes"/>, else a new uninitialized array (every byte is written before it is read).</summary>
    public byte[] Rent(long bytes)
    {
        if (bytes > Array.MaxLength) throw new NotSupportedException($"a {bytes}-byte weight set exceeds one buffer; shard it.");
        lock (_gate)
        {
            var i = _spares.FindIndex(b => b.LongLength == bytes);
            if (i >= 0)
            {
                var spare = _spares[i];
                _spares.RemoveAt(i);
                return spare;
            }
        }
        return GC.AllocateUninitializedArray<byte>((int)bytes);
    }

    /// <summary>Keeps <paramref name="buffer"/> for the next <see cref="Rent"/> of its size; the oldest spare makes room.</summary>
    public void Return(byte[] buffer)
    {
        lock (_gate)
        {
            if (_spares.Count == MaxSpares) _spares.RemoveAt(0);
            _spares.Add(buffer);
        }
    }

    /// <summary>Spares of <paramref name="bytes"/> held now.</summary>
    public int Spares(long bytes)
    {
        lock (_gate) return _spares.Count(b => b.LongLength == bytes);
    }

    /// <summary>
    /// Makes sure <paramref name="count"/> spares of <paramref name="bytes"/> (at most <see cref="MaxSpares"/>) are
    /// resident, writing one byte per page of each new one: a replica calls it when it loads, so that its first
    /// transfers land in memory that is already there.
    /// </summary>
    public void Prepare(long bytes, int count)
    {
        if (bytes <= 0 || bytes > Array.MaxLength) return;
        var page = Environment.SystemPageSize;
        for (var missing = Math.Min(count, MaxSpares) - Spares(bytes); missing > 0; missing--)
        {
            var buffer = GC.AllocateUninitializedArray<byte>((int)bytes);
            for (var at = 0; at < buffer.Length; at += page) buffer[at] = 0;
            Return(buffer);
        }
    }
}
