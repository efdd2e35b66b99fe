using System.Buffers.Binary;
using System.IO.Hashing;

namespace RefAlign.Compute.Formats;

/// <summary>
/// The integrity digest of a weight snapshot's bytes, a two-level tree of XXH3-128: each <see cref="BlockBytes"/> block
/// hashed on its own, the root hashing the block digests in order and the total length, as <c>xxh128t:</c> plus
/// lower-case hex. Blocks are independent, so they hash in parallel, on every core, each as soon as it has landed: one
/// hasher following the stream would be bound to one core. XXH3 runs at memory speed (SHA-256 capped the stream at a
/// fifth of raw TCP). It catches corruption, truncation and a mixed-up version; it is not a MAC: the stream's
/// per-publication token guards who may fetch, and a version's identity stays the learner's step/version.
/// </summary>
public static class WeightDigest
{
    /// <summary>Names the algorithm in the digest, so a log line or mismatch message says what it is.</summary>
    public const string Prefix = "xxh128t:";

    /// <summary>Bytes per leaf: large enough that a block's task costs nothing beside its hashing, small enough to spread.</summary>
    public const int BlockBytes = 4 << 20;

    /// <summary>How many blocks <paramref name="length"/> bytes make (the last one may be short).</summary>
    public static int BlockCount(long length) => (int)((length + BlockBytes - 1) / BlockBytes);

    /// <summary>Block <paramref name="index"/>'s digest, of the bytes it covers in the first <paramref name="length"/> of <paramref name="data"/>.</summary>
    public static byte[] OfBlock(byte[] data, long length, int index)
    {
        var start = (long)index * BlockBytes;
        return XxHash128.Hash(data.AsSpan((int)start, (int)Math.Min(BlockBytes, length - start)));
    }

    /// <summary>The root over every block's digest, in order, and the total length (so a cut stream never matches).</summary>
    public static string Root(IReadOnlyList<byte[]> blocks, long length)
    {
        var root = new XxHash128();
        foreach (var b in blocks) root.Append(b);
        Span<byte> total = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(total, length);
        root.Append(total);
        return Prefix + Convert.ToHexStringLower(root.GetCurrentHash());
    }

    /// <summary>The digest of <paramref name="data"/>, its blocks hashed in parallel.</summary>
    public static string Of(byte[] data)
    {
        var blocks = new byte[BlockCount(data.LongLength)][];
        Parallel.For(0, blocks.Length, i => blocks[i] = OfBlock(data, data.LongLength, i));
        return Root(blocks, data.LongLength);
    }
}
