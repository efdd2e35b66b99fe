using System.IO.Hashing;

namespace RefAlign.Compute.Formats;

/// <summary>
/// The integrity digest of a weight snapshot's bytes: XXH3-128 as <c>xxh128:</c> plus lower-case hex. It runs at memory
/// speed, so checking a version as it lands does not cap the weight stream (SHA-256 did, at a fifth of raw TCP). It
/// catches corruption, truncation and a mixed-up version; it is not a MAC: the stream's per-publication token guards
/// who may fetch, and a version's identity stays the learner's step/version.
/// </summary>
public sealed class WeightDigest
{
    /// <summary>Names the algorithm in the digest, so a log line or mismatch message says what it is.</summary>
    public const string Prefix = "xxh128:";

    readonly XxHash128 _hash = new();

    /// <summary>Adds the next bytes of the stream.</summary>
    public void Append(ReadOnlySpan<byte> bytes) => _hash.Append(bytes);

    /// <summary>The digest of everything appended so far.</summary>
    public string Current() => Format(_hash.GetCurrentHash());

    /// <summary>The digest of <paramref name="data"/> in one pass.</summary>
    public static string Of(ReadOnlySpan<byte> data) => Format(XxHash128.Hash(data));

    static string Format(byte[] hash) => Prefix + Convert.ToHexStringLower(hash);
}
