using Google.Protobuf;

namespace RefAlign.Compute.Tokenization.SentencePiece;

/// <summary>ModelProto.SentencePiece.Type of sentencepiece_model.proto.</summary>
public enum PieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>TrainerSpec.ModelType.</summary>
public enum SentencePieceModelType
{
    Unigram = 1,
    Bpe = 2,
    Word = 3,
    Char = 4,
}

/// <summary>One vocabulary entry; the piece is kept as the UTF-8 bytes the file holds.</summary>
public sealed record Piece(byte[] Bytes, float Score, PieceType Type)
{
    public string Text => System.Text.Encoding.UTF8.GetString(Bytes);
}

/// <summary>NormalizerSpec: what the encoder reads of it (name only for messages; the charsmap does the work).</summary>
public sealed record NormalizerSpec(string Name, byte[] PrecompiledCharsMap, bool AddDummyPrefix, bool RemoveExtraWhitespaces,
    bool EscapeWhitespaces);

/// <summary>The TrainerSpec fields that matter when encoding and decoding, with the proto's defaults.</summary>
public sealed record TrainerSpec
{
    public SentencePieceModelType ModelType { get; init; } = SentencePieceModelType.Unigram;
    public bool ByteFallback { get; init; }
    public bool TreatWhitespaceAsSuffix { get; init; }
    public string UnkPiece { get; init; } = "<unk>";
    public string BosPiece { get; init; } = "<s>";
    public string EosPiece { get; init; } = "</s>";
    public string PadPiece { get; init; } = "<pad>";
    public byte[] UnkSurface { get; init; } = " \u2047 "u8.ToArray();
}

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (ModelProto, proto2), parsed field by field. Only the fields the encoder
/// needs are kept; unknown fields are skipped as protobuf requires.
/// </summary>
public sealed record ModelProto(IReadOnlyList<Piece> Pieces, TrainerSpec Trainer, NormalizerSpec Normalizer,
    NormalizerSpec? Denormalizer, IReadOnlyList<(string Input, string Expected)> SelfTests)
{
    public static ModelProto Parse(byte[] data, string path)
    {
        var pieces = new List<Piece>();
        var trainer = new TrainerSpec();
        NormalizerSpec normalizer = DefaultNormalizer, denormalizer = null!;
        var hasDenormalizer = false;
        var tests = new List<(string, string)>();
        var field = "ModelProto";
        try
        {
            var input = new CodedInputStream(data);
            for (uint tag; (tag = input.ReadTag()) != 0;)
                switch (WireFormat.GetTagFieldNumber(tag))
                {
                    case 1: field = $"pieces[{pieces.Count}]"; pieces.Add(ParsePiece(Bytes(input, tag))); break;
                    case 2: field = "trainer_spec"; trainer = ParseTrainer(Bytes(input, tag), trainer); break;
                    case 3: field = "normalizer_spec"; normalizer = ParseNormalizer(Bytes(input, tag)); break;
                    case 4: field = "self_test_data"; tests.AddRange(ParseSelfTests(Bytes(input, tag))); break;
                    case 5: field = "denormalizer_spec"; denormalizer = ParseNormalizer(Bytes(input, tag)); hasDenormalizer = true; break;
                    default: input.SkipLastField(); break;
                }
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or InvalidDataException)
        {
            throw new ModelFormatException($"{path}: not a SentencePiece model (protobuf error in {field}: {e.Message}).", e);
        }
        if (pieces.Count == 0) throw new ModelFormatException($"{path}: the model has no pieces (is it a SentencePiece tokenizer.model?).");
        return new(pieces, trainer, normalizer, hasDenormalizer ? denormalizer : null, tests);
    }

    static readonly NormalizerSpec DefaultNormalizer = new("", [], AddDummyPrefix: true, RemoveExtraWhitespaces: true, EscapeWhitespaces: true);

    // A length-delimited field's payload; a message field sent with another wire type is malformed.
    static CodedInputStream Bytes(CodedInputStream input, uint tag)
    {
        if (WireFormat.GetTagWireType(tag) != WireFormat.WireType.LengthDelimited)
            throw new InvalidDataException($"field {WireFormat.GetTagFieldNumber(tag)} has wire type {WireFormat.GetTagWireType(tag)}, not a message.");
        return new CodedInputStream(input.ReadBytes().ToByteArray());
    }

    static Piece ParsePiece(CodedInputStream m)
    {
        byte[] piece = [];
        float score = 0;
        var type = PieceType.Normal;
        for (uint tag; (tag = m.ReadTag()) != 0;)
            switch (WireFormat.GetTagFieldNumber(tag))
            {
                case 1: piece = m.ReadBytes().ToByteArray(); break;
                case 2: score = m.ReadFloat(); break;
                case 3: type = (PieceType)m.ReadEnum(); break;
                default: m.SkipLastField(); break;
            }
        return new(piece, score, type);
    }

    static TrainerSpec ParseTrainer(CodedInputStream m, TrainerSpec t)
    {
        for (uint tag; (tag = m.ReadTag()) != 0;)
            t = WireFormat.GetTagFieldNumber(tag) switch
            {
                3 => t with { ModelType = (SentencePieceModelType)m.ReadEnum() },
                24 => t with { TreatWhitespaceAsSuffix = m.ReadBool() },
                35 => t with { ByteFallback = m.ReadBool() },
                44 => t with { UnkSurface = m.ReadBytes().ToByteArray() },
                45 => t with { UnkPiece = m.ReadString() },
                46 => t with { BosPiece = m.ReadString() },
                47 => t with { EosPiece = m.ReadString() },
                48 => t with { PadPiece = m.ReadString() },
                _ => Skip(m, t),
            };
        return t;
    }

    static NormalizerSpec ParseNormalizer(CodedInputStream m)
    {
        var n = DefaultNormalizer;
        for (uint tag; (tag = m.ReadTag()) != 0;)
            n = WireFormat.GetTagFieldNumber(tag) switch
            {
                1 => n with { Name = m.ReadString() },
                2 => n with { PrecompiledCharsMap = m.ReadBytes().ToByteArray() },
                3 => n with { AddDummyPrefix = m.ReadBool() },
                4 => n with { RemoveExtraWhitespaces = m.ReadBool() },
                5 => n with { EscapeWhitespaces = m.ReadBool() },
                _ => Skip(m, n),
            };
        return n;
    }

    static IEnumerable<(string, string)> ParseSelfTests(CodedInputStream m)
    {
        var samples = new List<(string, string)>();
        for (uint tag; (tag = m.ReadTag()) != 0;)
        {
            if (WireFormat.GetTagFieldNumber(tag) != 1) { m.SkipLastField(); continue; }
            var s = Bytes(m, tag);
            string input = "", expected = "";
            for (uint t; (t = s.ReadTag()) != 0;)
                switch (WireFormat.GetTagFieldNumber(t))
                {
                    case 1: input = s.ReadString(); break;
                    case 2: expected = s.ReadString(); break;
                    default: s.SkipLastField(); break;
                }
            samples.Add((input, expected));
        }
        return samples;
    }

    static T Skip<T>(CodedInputStream m, T value)
    {
        m.SkipLastField();
        return value;
    }
}
