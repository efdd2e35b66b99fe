using static TorchSharp.torch;

namespace RefAlign.Compute.Formats;

/// <summary>Where one tensor sits in a <see cref="WeightSnapshot"/>.</summary>
public sealed record WeightEntry(string Name, string DType, long[] Shape, long Offset, long Length);

/// <summary>
/// A set of named tensors as one contiguous byte buffer plus an index, for moving policy weights between processes in
/// chunks: raw little-endian tensor bytes, so what arrives is bit-identical to what left.
/// </summary>
public sealed class WeightSnapshot(IReadOnlyList<WeightEntry> entries, byte[] data)
{
    public IReadOnlyList<WeightEntry> Entries { get; } = entries;
    public byte[] Data { get; } = data;
    public long TotalBytes => Data.LongLength;

    /// <summary>The <see cref="WeightDigest"/> of <see cref="Data"/>: what a receiver checks the bytes it got against.</summary>
    public string Digest() => WeightDigest.Of(Data);

    /// <summary>
    /// Copies the named tensors (moved to CPU, made contiguous) into one buffer, in name order: a new one, or one of the
    /// given size from <paramref name="allocate"/> (every byte is overwritten, so it may hold anything).
    /// </summary>
    public static WeightSnapshot Capture(IEnumerable<(string Name, Tensor Tensor)> tensors, Func<long, byte[]>? allocate = null)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var total = list.Sum(t => t.Tensor.NumberOfElements * t.Tensor.ElementSize);
        if (total > Array.MaxLength) throw new NotSupportedException($"a {total}-byte weight set exceeds one buffer; shard it.");
        var data = allocate?.Invoke(total) ?? new byte[total];
        if (data.LongLength != total) throw new ArgumentException($"the buffer for a {total}-byte capture holds {data.LongLength} bytes.", nameof(allocate));
        var entries = new List<WeightEntry>(list.Count);
        long offset = 0;
        using var _ = no_grad();
        foreach (var (name, t) in list)
        {
            using var cpu = t.detach().cpu().contiguous();
            var length = cpu.NumberOfElements * cpu.ElementSize;
            cpu.bytes.CopyTo(data.AsSpan((int)offset, (int)length));
            entries.Add(new WeightEntry(name, cpu.dtype.ToString(), cpu.shape, offset, length));
            offset += length;
        }
        return new WeightSnapshot(entries, data);
    }

    /// <summary>
    /// Writes every entry into the tensor of the same name (same shape and dtype required; device may differ).
    /// Everything is checked before anything is copied, so a mismatched snapshot leaves the targets untouched.
    /// </summary>
    public void ApplyTo(IReadOnlyDictionary<string, Tensor> targets)
    {
        foreach (var e in Entries)
        {
            if (!targets.TryGetValue(e.Name, out var t))
                throw new ModelFormatException($"weight snapshot: tensor '{e.Name}' has no counterpart in the receiving model.");
            if (!t.shape.SequenceEqual(e.Shape) || t.dtype.ToString() != e.DType)
                throw new ModelFormatException(
                    $"weight snapshot: tensor '{e.Name}' is {e.DType} [{string.Join(", ", e.Shape)}] but the receiver has {t.dtype} [{string.Join(", ", t.shape)}].");
        }
        using var _ = no_grad();
        foreach (var e in Entries)
        {
            var target = targets[e.Name];
            var bytes = Data.AsSpan((int)e.Offset, (int)e.Length);
            if (target.device_type == TorchSharp.DeviceType.CPU && target.is_contiguous())
            {
                // One copy straight into the tensor's memory (a replica's weights: nothing tracks their history).
                bytes.CopyTo(target.bytes);
                continue;
            }
            using var staged = empty(e.Shape, target.dtype);
            bytes.CopyTo(staged.bytes);
            target.copy_(staged);
        }
    }

    /// <summary>The buffer cut into pieces of at most <paramref name="chunkBytes"/> (under the message size limit).</summary>
    public int ChunkCount(int chunkBytes) => (int)Math.Max(1, (TotalBytes + chunkBytes - 1) / chunkBytes);

    public byte[] Chunk(int index, int chunkBytes)
    {
        var start = (long)index * chunkBytes;
        if (index < 0 || start > TotalBytes || (start == TotalBytes && TotalBytes > 0))
            throw new ArgumentOutOfRangeException(nameof(index), $"chunk {index} is outside a {TotalBytes}-byte snapshot.");
        return Data.AsSpan((int)start, (int)Math.Min(chunkBytes, TotalBytes - start)).ToArray();
    }

    /// <summary>Reassembles a snapshot from its index and chunks (in order), checking the total length.</summary>
    public static WeightSnapshot FromChunks(IReadOnlyList<WeightEntry> entries, IEnumerable<byte[]> chunks)
    {
        var expected = entries.Count == 0 ? 0 : entries.Max(e => e.Offset + e.Length);
        var data = new byte[expected];
        long at = 0;
        foreach (var c in chunks)
        {
            if (at + c.LongLength > expected)
                throw new ModelFormatException($"weight snapshot: received more than the {expected} bytes the index describes.");
            c.CopyTo(data, at);
            at += c.LongLength;
        }
        if (at != expected)
            throw new ModelFormatException($"weight snapshot: received {at} bytes, the index describes {expected}.");
        return new WeightSnapshot(entries, data);
    }
}
