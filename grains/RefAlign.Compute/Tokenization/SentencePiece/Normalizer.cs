using System.Buffers.Binary;

namespace RefAlign.Compute.Tokenization.SentencePiece;

/// <summary>UTF-8 rules exactly as sentencepiece's util.h/util.cc apply them (byte-based, no .NET decoder).</summary>
internal static class Utf8
{
    public const int UnicodeError = 0xFFFD;
    public static ReadOnlySpan<byte> ReplacementChar => [0xEF, 0xBF, 0xBD];

    /// <summary>Length of the character a lead byte announces (continuation bytes count 1), as OneCharLen.</summary>
    public static int OneCharLen(byte lead) => (lead >> 4) switch
    {
        < 12 => 1,
        12 or 13 => 2,
        14 => 3,
        _ => 4,
    };

    /// <summary>One code point, or <see cref="UnicodeError"/> with length 1 for malformed input (overlong, surrogate, truncated).</summary>
    public static int Decode(ReadOnlySpan<byte> s, out int length)
    {
        length = 1;
        var b0 = s[0];
        if (b0 < 0x80) return b0;
        if (s.Length >= 2 && (b0 & 0xE0) == 0xC0)
        {
            var cp = ((b0 & 0x1F) << 6) | (s[1] & 0x3F);
            if (Trail(s[1]) && cp >= 0x80 && Valid(cp)) { length = 2; return cp; }
        }
        else if (s.Length >= 3 && (b0 & 0xF0) == 0xE0)
        {
            var cp = ((b0 & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
            if (Trail(s[1]) && Trail(s[2]) && cp >= 0x800 && Valid(cp)) { length = 3; return cp; }
        }
        else if (s.Length >= 4 && (b0 & 0xF8) == 0xF0)
        {
            var cp = ((b0 & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
            if (Trail(s[1]) && Trail(s[2]) && Trail(s[3]) && cp >= 0x10000 && Valid(cp)) { length = 4; return cp; }
        }
        return UnicodeError;
    }

    /// <summary>True for a well-formed character (an encoded U+FFFD included), as IsValidDecodeUTF8.</summary>
    public static bool IsValid(ReadOnlySpan<byte> s, out int length) => Decode(s, out length) != UnicodeError || length == 3;

    static bool Trail(byte b) => (b & 0xC0) == 0x80;
    static bool Valid(int cp) => cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF);
}

/// <summary>
/// The normalization rules a model carries in <c>precompiled_charsmap</c>: a darts-clone double-array trie from
/// input byte strings to offsets of NUL-terminated replacements. Every named normalizer (nmt_nfkc, nfkc, *_cf) and
/// every custom rule table is compiled into this blob by spm_train, so reading the blob is reading the normalizer.
/// Layout: uint32 trie size in bytes, the trie's uint32 units, then the replacement strings (all little-endian).
/// </summary>
internal sealed class PrecompiledCharsMap
{
    readonly uint[] _units;
    readonly byte[] _replacements;

    public PrecompiledCharsMap(byte[] blob, string what)
    {
        if (blob.Length <= 4) throw new ModelFormatException($"{what}: precompiled_charsmap is broken (only {blob.Length} bytes).");
        var trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieBytes >= blob.Length || trieBytes % 4 != 0 || trieBytes == 0)
            throw new ModelFormatException($"{what}: precompiled_charsmap is broken (trie size {trieBytes} of a {blob.Length}-byte blob).");
        _units = new uint[trieBytes / 4];
        for (var i = 0; i < _units.Length; i++) _units[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.AsSpan(4 + 4 * i));
        _replacements = blob[(4 + (int)trieBytes)..];
        _what = what;
    }

    readonly string _what;

    /// <summary>
    /// The longest rule matching a prefix of <paramref name="input"/>: its length in bytes (0 when none) and its
    /// replacement. darts-clone's commonPrefixSearch, unit by unit.
    /// </summary>
    public int LongestMatch(ReadOnlySpan<byte> input, out ReadOnlySpan<byte> replacement)
    {
        replacement = default;
        var longest = 0;
        var value = 0;
        var nodePos = Offset(Unit(0));
        for (var i = 0; i < input.Length; i++)
        {
            nodePos ^= input[i];
            // Past the end can only be a mismatch: darts-clone sizes arrays so that every child slot exists.
            if (nodePos >= _units.Length) break;
            var unit = _units[nodePos];
            if (Label(unit) != input[i]) break;
            nodePos ^= Offset(unit);
            if (HasLeaf(unit))
            {
                longest = i + 1;
                value = (int)(Unit(nodePos) & 0x7FFFFFFFu);
            }
        }
        if (longest == 0) return 0;
        if (value >= _replacements.Length) throw new ModelFormatException($"{_what}: precompiled_charsmap is broken (replacement offset {value}).");
        var rest = _replacements.AsSpan(value);
        var end = rest.IndexOf((byte)0);
        replacement = end < 0 ? rest : rest[..end];
        return longest;
    }

    uint Unit(uint pos) => pos < _units.Length ? _units[pos]
        : throw new ModelFormatException($"{_what}: precompiled_charsmap is broken (unit {pos} of {_units.Length}).");

    static bool HasLeaf(uint unit) => ((unit >> 8) & 1) == 1;
    static uint Label(uint unit) => unit & ((1u << 31) | 0xFF);
    static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);
}

/// <summary>
/// sentencepiece's Normalizer: user-defined symbols pass untouched, every other character goes through the
/// charsmap (none for identity), malformed UTF-8 becomes U+FFFD one byte at a time; then the whitespace rules:
/// leading/trailing/repeated spaces dropped (<c>remove_extra_whitespaces</c>), a dummy "▁" in front (or behind with
/// <c>treat_whitespace_as_suffix</c>) when <c>add_dummy_prefix</c>, spaces written as U+2581 (<c>escape_whitespaces</c>).
/// </summary>
internal sealed class Normalizer(NormalizerSpec spec, bool treatWhitespaceAsSuffix, ByteTrie? userDefined, string what)
{
    static ReadOnlySpan<byte> SpaceSymbol => [0xE2, 0x96, 0x81];

    readonly PrecompiledCharsMap? _charsMap = spec.PrecompiledCharsMap.Length == 0 ? null : new PrecompiledCharsMap(spec.PrecompiledCharsMap, what);

    public byte[] Normalize(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return [];
        var output = new List<byte>(input.Length * 3);
        if (spec.RemoveExtraWhitespaces)
            while (!input.IsEmpty)
            {
                var consumed = NormalizePrefix(input, out var head);
                if (!head.SequenceEqual(" "u8)) break;
                input = input[consumed..];
            }
        if (input.IsEmpty) return [];

        if (!treatWhitespaceAsSuffix && spec.AddDummyPrefix) AddSpace(output);
        var isPrevSpace = spec.RemoveExtraWhitespaces;
        while (!input.IsEmpty)
        {
            var consumed = NormalizePrefix(input, out var piece);
            while (isPrevSpace && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
            if (!piece.IsEmpty)
            {
                foreach (var b in piece)
                    if (spec.EscapeWhitespaces && b == (byte)' ') output.AddRange(SpaceSymbol);
                    else output.Add(b);
                isPrevSpace = piece[^1] == (byte)' ';
            }
            input = input[consumed..];
            if (!spec.RemoveExtraWhitespaces) isPrevSpace = false;
        }
        if (spec.RemoveExtraWhitespaces)
        {
            var space = spec.EscapeWhitespaces ? SpaceSymbol : " "u8;
            while (output.Count >= space.Length && System.Runtime.InteropServices.CollectionsMarshal.AsSpan(output).EndsWith(space))
                output.RemoveRange(output.Count - space.Length, space.Length);
        }
        if (treatWhitespaceAsSuffix && spec.AddDummyPrefix) AddSpace(output);
        return [.. output];
    }

    void AddSpace(List<byte> output)
    {
        if (spec.EscapeWhitespaces) output.AddRange(SpaceSymbol);
        else output.Add((byte)' ');
    }

    /// <summary>Bytes of <paramref name="input"/> consumed by its first unit, and what that unit normalizes to.</summary>
    int NormalizePrefix(ReadOnlySpan<byte> input, out ReadOnlySpan<byte> normalized)
    {
        if (userDefined is not null && userDefined.LongestPrefix(input) is > 0 and var symbol)
        {
            normalized = input[..symbol];
            return symbol;
        }
        if (_charsMap is not null && _charsMap.LongestMatch(input, out normalized) is > 0 and var matched) return matched;
        if (!Utf8.IsValid(input, out var length))
        {
            normalized = Utf8.ReplacementChar;
            return 1;
        }
        normalized = input[..length];
        return length;
    }
}
