using Google.Protobuf;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Tokenization.SentencePiece;

namespace RefAlign.Presets;

public sealed record SentencePieceEntry(string Piece, float Score, PieceType Type);

/// <summary>
/// The model-wide settings a written <c>tokenizer.model</c> carries; the defaults are Llama-2's (BPE, byte fallback,
/// identity normalizer with a dummy prefix, extra whitespace kept).
/// </summary>
public sealed record SentencePieceModelOptions
{
    public SentencePieceModelType ModelType { get; init; } = SentencePieceModelType.Bpe;
    public bool ByteFallback { get; init; } = true;
    public string NormalizerName { get; init; } = "identity";
    public byte[] PrecompiledCharsMap { get; init; } = [];
    public bool AddDummyPrefix { get; init; } = true;
    public bool RemoveExtraWhitespaces { get; init; }
    public IReadOnlyList<(string Input, string Expected)> SelfTests { get; init; } = [];
}

/// <summary>
/// Writes a SentencePiece <c>tokenizer.model</c> (ModelProto): unk/bos/eos = 0/1/2, no pad, escaped whitespace, and
/// the <see cref="SentencePieceModelOptions"/> (Llama-2's by default). Encoded by hand with
/// <see cref="CodedOutputStream"/> because we only need a handful of fields of the proto.
/// </summary>
public static class SentencePieceModelWriter
{
    public const string SpaceSymbol = "\u2581";

    public static void Write(string path, IReadOnlyList<SentencePieceEntry> pieces, SentencePieceModelOptions? options = null)
    {
        var o = options ?? new SentencePieceModelOptions();
        using var file = File.Create(path);
        using var output = new CodedOutputStream(file);
        foreach (var p in pieces) WriteMessage(output, 1, m =>
        {
            m.WriteTag(1, WireFormat.WireType.LengthDelimited); m.WriteString(p.Piece);
            m.WriteTag(2, WireFormat.WireType.Fixed32); m.WriteFloat(p.Score);
            m.WriteTag(3, WireFormat.WireType.Varint); m.WriteEnum((int)p.Type);
        });
        WriteMessage(output, 2, m => // TrainerSpec
        {
            m.WriteTag(3, WireFormat.WireType.Varint); m.WriteEnum((int)o.ModelType);
            WriteInt(m, 4, pieces.Count); // vocab_size
            m.WriteTag(35, WireFormat.WireType.Varint); m.WriteBool(o.ByteFallback);
            WriteInt(m, 40, 0); WriteInt(m, 41, 1); WriteInt(m, 42, 2); WriteInt(m, 43, -1); // unk, bos, eos, pad ids
            WriteString(m, 45, "<unk>"); WriteString(m, 46, "<s>"); WriteString(m, 47, "</s>"); WriteString(m, 48, "<pad>");
        });
        WriteMessage(output, 3, m => // NormalizerSpec
        {
            WriteString(m, 1, o.NormalizerName);
            if (o.PrecompiledCharsMap.Length > 0)
            {
                m.WriteTag(2, WireFormat.WireType.LengthDelimited);
                m.WriteBytes(ByteString.CopyFrom(o.PrecompiledCharsMap));
            }
            m.WriteTag(3, WireFormat.WireType.Varint); m.WriteBool(o.AddDummyPrefix);
            m.WriteTag(4, WireFormat.WireType.Varint); m.WriteBool(o.RemoveExtraWhitespaces);
            m.WriteTag(5, WireFormat.WireType.Varint); m.WriteBool(true); // escape_whitespaces
        });
        if (o.SelfTests.Count > 0)
            WriteMessage(output, 4, m => // SelfTestData
            {
                foreach (var (input, expected) in o.SelfTests)
                    WriteMessage(m, 1, sample =>
                    {
                        WriteString(sample, 1, input);
                        WriteString(sample, 2, expected);
                    });
            });
    }

    /// <summary>
    /// Trains a BPE on the corpus (words = whitespace-separated, each starting with "▁") and lays out a
    /// Llama-2 style vocabulary: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte pieces, merged pieces by merge order
    /// (score -rank), then the single characters. The total never exceeds <paramref name="vocabSize"/>.
    /// </summary>
    public static IReadOnlyList<SentencePieceEntry> BuildLlamaStyle(IEnumerable<string> corpus, int vocabSize)
    {
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        var chars = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var sentence in corpus)
        {
            var text = SpaceSymbol + sentence.Replace(" ", SpaceSymbol, StringComparison.Ordinal);
            foreach (var word in SplitWords(text)) words[word] = words.GetValueOrDefault(word) + 1;
        }
        foreach (var (word, count) in words)
            foreach (var rune in Runes(word)) chars[rune] = chars.GetValueOrDefault(rune) + count;

        var pieces = new List<SentencePieceEntry>
        {
            new("<unk>", 0, PieceType.Unknown),
            new("<s>", 0, PieceType.Control),
            new("</s>", 0, PieceType.Control),
        };
        for (var b = 0; b < 256; b++) pieces.Add(new($"<0x{b:X2}>", 0, PieceType.Byte));

        // Keep the most frequent characters that fit; rarer ones fall back to bytes.
        var charList = chars.OrderByDescending(c => c.Value).ThenBy(c => c.Key, StringComparer.Ordinal)
            .Select(c => c.Key).Take(Math.Max(0, vocabSize - pieces.Count)).ToList();
        var maxMerges = Math.Max(0, vocabSize - pieces.Count - charList.Count);
        var merges = BpeTrainer.Train(words.Select(w => ((IReadOnlyList<string>)Runes(w.Key).ToList(), w.Value)), maxMerges);

        var seen = new HashSet<string>(charList, StringComparer.Ordinal);
        var rank = 0;
        foreach (var (left, right) in merges)
            if (seen.Add(left + right)) pieces.Add(new(left + right, -rank++, PieceType.Normal));
        foreach (var c in charList) pieces.Add(new(c, -rank++, PieceType.Normal));
        return pieces;
    }

    private static IEnumerable<string> SplitWords(string text)
    {
        var start = 0;
        for (var i = 1; i <= text.Length; i++)
        {
            if (i < text.Length && text[i] != SpaceSymbol[0]) continue;
            yield return text[start..i];
            start = i;
        }
    }

    private static IEnumerable<string> Runes(string s) => s.EnumerateRunes().Select(r => r.ToString());

    private static void WriteInt(CodedOutputStream m, int field, int value)
    {
        m.WriteTag(field, WireFormat.WireType.Varint);
        m.WriteInt32(value);
    }

    private static void WriteString(CodedOutputStream m, int field, string value)
    {
        m.WriteTag(field, WireFormat.WireType.LengthDelimited);
        m.WriteString(value);
    }

    private static void WriteMessage(CodedOutputStream output, int field, Action<CodedOutputStream> body)
    {
        using var buffer = new MemoryStream();
        using (var inner = new CodedOutputStream(buffer, leaveOpen: true)) body(inner);
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(buffer.ToArray()));
    }
}
