using System.Globalization;
using System.Text;

namespace RefAlign.Compute.Tokenization.SentencePiece;

/// <summary>
/// A SentencePiece model (<c>tokenizer.model</c>) read and applied as the sentencepiece library does it (v0.1.97,
/// the C++ code behind <c>spm_encode</c> / <c>spm_decode</c> and the Python module): normalization from the
/// model's own rules, BPE or unigram segmentation, unknown characters as one merged unknown piece or as UTF-8 byte
/// pieces (<c>byte_fallback</c>), and the library's decoding. No special tokens are recognised in text here; the
/// Hugging Face conventions on top live in <see cref="TextTokenizer"/> (docs/tokenizers.md lists them).
/// </summary>
public sealed class SentencePieceModel
{
    readonly ByteTrie _normal = new();   // NORMAL, USER_DEFINED, UNUSED: what segmentation may produce
    // Exact lookups by the bytes spelled as Latin-1 chars (one char per byte): one hash per lookup.
    readonly Dictionary<string, int> _normalIds = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _reservedIds = new(StringComparer.Ordinal); // CONTROL, UNKNOWN, BYTE: looked up first
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _normalLookup, _reservedLookup;
    readonly ByteTrie? _userDefined;
    readonly int[] _byteIds = new int[256];
    readonly Normalizer _normalizer;
    readonly Normalizer? _denormalizer;

    public ModelProto Proto { get; }
    public IReadOnlyList<Piece> Pieces => Proto.Pieces;
    public int UnkId { get; } = -1;
    public bool ByteFallback => Proto.Trainer.ByteFallback;

    /// <summary>Lowest and highest NORMAL score (unigram's unknown penalty and user-defined bonus start from them).</summary>
    internal float MinScore { get; } = float.MaxValue;
    internal float MaxScore { get; } = 1.17549435E-38f; // FLT_MIN, the library's starting value

    internal ByteTrie NormalPieces => _normal;

    SentencePieceModel(ModelProto proto, string path)
    {
        Proto = proto;
        var type = proto.Trainer.ModelType;
        if (type is not (SentencePieceModelType.Bpe or SentencePieceModelType.Unigram))
            throw new ModelFormatException($"{path}: trainer_spec.model_type {type.ToString().ToUpperInvariant()} is not supported (BPE and UNIGRAM are).");
        var userDefined = new ByteTrie();
        var bytesFound = 0;
        for (var id = 0; id < proto.Pieces.Count; id++)
        {
            var p = proto.Pieces[id];
            if (p.Bytes.Length == 0) throw new ModelFormatException($"{path}: pieces[{id}] is empty.");
            if (!Enum.IsDefined(p.Type)) throw new ModelFormatException($"{path}: pieces[{id}] '{p.Text}' has unknown type {(int)p.Type}.");
            var normal = p.Type is PieceType.Normal or PieceType.UserDefined or PieceType.Unused;
            if (!(normal ? _normalIds : _reservedIds).TryAdd(Latin1(p.Bytes), id))
                throw new ModelFormatException($"{path}: pieces[{id}] '{p.Text}' is already defined.");
            if (normal) _normal.Add(p.Bytes, id);
            if (p.Type == PieceType.UserDefined) userDefined.Add(p.Bytes, id);
            if (p.Type == PieceType.Normal)
            {
                MinScore = Math.Min(MinScore, p.Score);
                MaxScore = Math.Max(MaxScore, p.Score);
            }
            if (p.Type == PieceType.Unknown)
            {
                if (UnkId >= 0) throw new ModelFormatException($"{path}: pieces[{id}] is a second unknown piece (the first is {UnkId}).");
                UnkId = id;
            }
            if (p.Type == PieceType.Byte)
            {
                if (!ByteFallback)
                    throw new ModelFormatException($"{path}: byte piece '{p.Text}' (pieces[{id}]) although trainer_spec.byte_fallback is false.");
                var b = PieceToByte(p.Bytes);
                if (b < 0) throw new ModelFormatException($"{path}: pieces[{id}] '{p.Text}' is not a byte piece <0xXX>.");
                _byteIds[b] = id;
                bytesFound++;
            }
        }
        if (UnkId < 0) throw new ModelFormatException($"{path}: the model has no unknown piece (type UNKNOWN).");
        if (ByteFallback && bytesFound != 256)
            throw new ModelFormatException($"{path}: trainer_spec.byte_fallback is true but the model has {bytesFound} of the 256 byte pieces.");
        if (type == SentencePieceModelType.Unigram && _normal.Count == 0)
            throw new ModelFormatException($"{path}: a unigram model needs at least one normal piece.");
        _userDefined = userDefined.Count > 0 ? userDefined : null;
        _normalLookup = _normalIds.GetAlternateLookup<ReadOnlySpan<char>>();
        _reservedLookup = _reservedIds.GetAlternateLookup<ReadOnlySpan<char>>();
        var n = proto.Normalizer;
        _normalizer = new Normalizer(n, proto.Trainer.TreatWhitespaceAsSuffix, _userDefined, $"{path}: normalizer '{NameOf(n)}'");
        if (proto.Denormalizer is { PrecompiledCharsMap.Length: > 0 } d)
            _denormalizer = new Normalizer(d, treatWhitespaceAsSuffix: false, null, $"{path}: denormalizer '{NameOf(d)}'");
        foreach (var (input, expected) in proto.SelfTests)
        {
            var got = string.Join(' ', EncodeToPieces(input).Select(p => p.Piece));
            if (got != expected)
                throw new ModelFormatException($"{path}: self_test_data sample '{input}' encodes to '{got}' here, the model expects '{expected}'.");
        }
    }

    static string NameOf(NormalizerSpec n) => n.Name.Length > 0 ? n.Name : "(unnamed)";

    public static SentencePieceModel Load(string path)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"{path}: cannot read the SentencePiece model ({e.Message}).", e);
        }
        return FromBytes(data, path);
    }

    /// <param name="path">Names the source in error messages.</param>
    public static SentencePieceModel FromBytes(byte[] data, string path) => new(ModelProto.Parse(data, path), path);

    /// <summary>The piece's id; null when it is not in the vocabulary (no unknown fallback).</summary>
    public int? Find(string piece)
    {
        var key = Latin1(Encoding.UTF8.GetBytes(piece));
        return _reservedIds.TryGetValue(key, out var id) || _normalIds.TryGetValue(key, out id) ? id : null;
    }

    /// <summary>The id of a CONTROL piece with this text (how the library finds bos/eos/pad), else null.</summary>
    public int? ControlId(string piece) => Find(piece) is int id && Pieces[id].Type == PieceType.Control ? id : null;

    /// <summary>PieceToId for bytes spelled as Latin-1 chars: reserved pieces first, then normal ones, else the unknown id.</summary>
    internal int PieceToId(ReadOnlySpan<char> latin1) =>
        _reservedLookup.TryGetValue(latin1, out var id) || _normalLookup.TryGetValue(latin1, out id) ? id : UnkId;

    /// <summary>Id of a NORMAL / USER_DEFINED / UNUSED piece spelled as Latin-1 chars, or -1 (what BPE may merge into).</summary>
    internal int NormalPieceId(ReadOnlySpan<char> latin1) => _normalLookup.TryGetValue(latin1, out var id) ? id : -1;

    internal static string Latin1(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    /// <summary>Length of the first unit of <paramref name="text"/>: a whole user-defined symbol, else one UTF-8 character.</summary>
    internal int PrefixMatch(ReadOnlySpan<byte> text, out bool userDefined)
    {
        var n = _userDefined?.LongestPrefix(text) ?? 0;
        userDefined = n > 0;
        return n > 0 ? n : Math.Min(text.Length, Utf8.OneCharLen(text[0]));
    }

    /// <summary>The text after the model's normalization (UTF-8), as the segmenter sees it.</summary>
    public byte[] Normalize(string text) => _normalizer.Normalize(Encoding.UTF8.GetBytes(text));

    /// <summary>
    /// Ids as the library's Encode returns them: a run of unknown characters becomes one unknown id, or with
    /// byte_fallback each of their UTF-8 bytes its byte piece.
    /// </summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>();
        Populate(text, (id, _, _) => ids.Add(id), _ => { });
        return [.. ids];
    }

    /// <summary><see cref="Encode"/> with each piece's text (an unknown run's text is the run's normalized characters).</summary>
    public IReadOnlyList<(int Id, string Piece)> EncodeToPieces(string text)
    {
        var result = new List<(int, string)>();
        Populate(text, (id, normalized, s) => result.Add((id, id == UnkId || Pieces[id].Type != PieceType.Byte
                ? Encoding.UTF8.GetString(normalized.AsSpan(s.Start, s.Length)) : Pieces[id].Text)),
            extra => result[^1] = (UnkId, result[^1].Item2 + extra));
        return result;
    }

    void Populate(string text, Action<int, byte[], Segment> add, Action<string> extendUnknown)
    {
        ArgumentNullException.ThrowIfNull(text);
        var normalized = Normalize(text);
        var segments = Proto.Trainer.ModelType == SentencePieceModelType.Bpe
            ? BpeEncoder.Encode(this, normalized)
            : UnigramEncoder.Encode(this, normalized);
        var prevUnknown = false;
        foreach (var s in segments)
        {
            var unknown = s.Id == UnkId;
            if (unknown && ByteFallback)
                for (var i = 0; i < s.Length; i++) add(_byteIds[normalized[s.Start + i]], normalized, s);
            else if (unknown && prevUnknown) extendUnknown(Encoding.UTF8.GetString(normalized.AsSpan(s.Start, s.Length)));
            else add(s.Id, normalized, s);
            prevUnknown = unknown;
        }
    }

    /// <summary>
    /// The library's Decode: control pieces vanish, the unknown piece reads as <c>unk_surface</c> (" ⁇ "), runs of
    /// byte pieces are read as UTF-8 with U+FFFD for each malformed byte, "▁" becomes a space, and the first piece loses
    /// its leading "▁" when the model adds a dummy prefix or removes extra whitespace.
    /// </summary>
    public string Decode(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var text = new List<byte>();
        var byteRun = new List<byte>();
        var isBosWs = true;
        var bosWsSeen = false;
        foreach (var given in ids)
        {
            if (given < 0 || given >= Pieces.Count)
                throw new ArgumentOutOfRangeException(nameof(ids), given, $"id {given} is outside the vocabulary of {Pieces.Count} pieces.");
            var pieceBytes = Pieces[given].Bytes;
            var id = PieceToId(Latin1(pieceBytes));
            if (Pieces[id].Type == PieceType.Byte)
            {
                byteRun.Add((byte)PieceToByte(pieceBytes));
                continue;
            }
            FlushBytes();
            if (bosWsSeen || text.Count > 0) isBosWs = false;
            bosWsSeen = DecodePiece(pieceBytes, id, isBosWs, text);
        }
        FlushBytes();
        var result = _denormalizer is null ? [.. text] : _denormalizer.Normalize([.. text]);
        return Encoding.UTF8.GetString(result);

        void FlushBytes()
        {
            var run = byteRun.ToArray().AsSpan();
            while (!run.IsEmpty)
            {
                if (Utf8.IsValid(run, out var length)) text.AddRange(run[..length]);
                else text.AddRange(Utf8.ReplacementChar);
                run = run[length..];
            }
            byteRun.Clear();
        }
    }

    /// <summary>Appends one non-byte piece's surface; returns whether it consumed the leading "▁" of the text.</summary>
    bool DecodePiece(byte[] piece, int id, bool isBosWs, List<byte> text)
    {
        var type = Pieces[id].Type;
        if (type == PieceType.Control) return false;
        if (type == PieceType.Unknown)
        {
            text.AddRange(Pieces[id].Bytes.AsSpan().SequenceEqual(piece) ? Proto.Trainer.UnkSurface : piece);
            return false;
        }
        ReadOnlySpan<byte> span = piece;
        var consumed = false;
        var n = Proto.Normalizer;
        if (isBosWs && (n.AddDummyPrefix || n.RemoveExtraWhitespaces))
        {
            consumed = span.StartsWith(SpaceSymbol);
            if (consumed) span = span[SpaceSymbol.Length..];
            if (n.RemoveExtraWhitespaces) consumed = false;
        }
        while (!span.IsEmpty)
        {
            if (span.StartsWith(SpaceSymbol))
            {
                text.Add((byte)' ');
                span = span[SpaceSymbol.Length..];
            }
            else
            {
                text.Add(span[0]);
                span = span[1..];
            }
        }
        return consumed;
    }

    static ReadOnlySpan<byte> SpaceSymbol => [0xE2, 0x96, 0x81];

    /// <summary>The byte of a piece spelled exactly "&lt;0xXX&gt;" (upper-case hex), else -1.</summary>
    static int PieceToByte(ReadOnlySpan<byte> piece)
    {
        if (piece.Length != 6 || !piece.StartsWith("<0x"u8) || piece[5] != (byte)'>') return -1;
        var hex = Encoding.ASCII.GetString(piece[3..5]);
        return hex.All(c => c is >= '0' and <= '9' or >= 'A' and <= 'F')
            ? int.Parse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture)
            : -1;
    }
}
