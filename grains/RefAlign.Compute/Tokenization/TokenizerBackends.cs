using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using RefAlign.Compute.Tokenization.SentencePiece;

namespace RefAlign.Compute.Tokenization;

/// <summary>The model part of a tokenizer: plain text ↔ ids, with no special-token handling.</summary>
internal interface ITokenizerBackend
{
    /// <summary>Largest id of the model vocabulary + 1.</summary>
    int VocabSize { get; }
    bool DefaultAddBos { get; }
    string? DefaultBos { get; }
    string? DefaultEos { get; }
    string? DefaultUnk { get; }
    int? TokenToId(string token);
    IReadOnlyList<int> Encode(string text);
    string Decode(IReadOnlyList<int> ids);
}

/// <summary>
/// SentencePiece <c>tokenizer.model</c> through our own reading of it (<see cref="SentencePieceModel"/>), which
/// encodes and decodes as the sentencepiece library does.
/// </summary>
internal sealed class SentencePieceBackend(SentencePieceModel model) : ITokenizerBackend
{
    public SentencePieceModel Model => model;
    public int VocabSize => model.Pieces.Count;
    public bool DefaultAddBos => true; // HF LlamaTokenizer's default
    // As the library's bos_id()/eos_id(): the trainer's piece names, when they are CONTROL pieces of the model.
    public string? DefaultBos => model.ControlId(model.Proto.Trainer.BosPiece) is int id ? model.Pieces[id].Text : null;
    public string? DefaultEos => model.ControlId(model.Proto.Trainer.EosPiece) is int id ? model.Pieces[id].Text : null;
    public string? DefaultUnk => model.Pieces[model.UnkId].Text;

    public static SentencePieceBackend Load(string path) => new(SentencePieceModel.Load(path));

    public int? TokenToId(string token) => model.Find(token);
    public IReadOnlyList<int> Encode(string text) => model.Encode(text);
    public string Decode(IReadOnlyList<int> ids) => model.Decode(ids);
}

/// <summary>GPT-2 / Qwen2 byte-level BPE through Microsoft.ML.Tokenizers' BpeTokenizer (ByteLevel mode).</summary>
internal sealed class ByteLevelBackend : ITokenizerBackend
{
    private readonly BpeTokenizer tokenizer;
    private readonly Dictionary<string, int> vocab;
    private readonly bool nfc;

    private ByteLevelBackend(Dictionary<string, int> vocab, IReadOnlyList<string> merges, Regex pattern, string file, bool nfc = false)
    {
        this.vocab = vocab;
        this.nfc = nfc;
        VocabSize = vocab.Values.DefaultIfEmpty(-1).Max() + 1;
        try
        {
            // Special tokens are not given to the library: TextTokenizer splits them out first (Qwen2 keeps them
            // outside vocab.json, which CodeGenTokenizer's simple Create rejects).
            tokenizer = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(pattern, null),
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException($"{file}: vocabulary and merges do not form a BPE model ({e.Message}).", e);
        }
    }

    public int VocabSize { get; }
    public bool DefaultAddBos => false;
    public string? DefaultBos => null;
    public string? DefaultEos => "<|endoftext|>"; // GPT-2's default; ignored when neither vocab nor added tokens have it
    public string? DefaultUnk => null;

    public int? TokenToId(string token) => vocab.TryGetValue(token, out var id) ? id : null;
    // GPT-NeoX's tokenizer.json normalizes to NFC before pre-tokenizing; Qwen2's does too.
    public IReadOnlyList<int> Encode(string text) => tokenizer.EncodeToIds(nfc ? UnicodeNormalization.ComposeNfc(text) : text);
    public string Decode(IReadOnlyList<int> ids) => tokenizer.Decode(ids, considerSpecialTokens: false);

    /// <summary>HF tokenizer.json with model.type BPE; its Split regex (Qwen2) or GPT-2's pattern pre-tokenizes.</summary>
    public static ByteLevelBackend FromTokenizerJson(JsonNode json, string path)
    {
        const string file = "tokenizer.json";
        if (json["model"] is not JsonObject model)
            throw new ModelFormatException($"{path}: no 'model' object.");
        var type = model["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String ? t.GetValue<string>() : "BPE";
        if (type != "BPE")
            throw new ModelFormatException($"{path}: model.type '{type}' is not supported (only byte-level BPE).");
        if (!Mentions(json["pre_tokenizer"], "ByteLevel") && !Mentions(json["decoder"], "ByteLevel"))
            throw new ModelFormatException($"{path}: not a byte-level BPE (no ByteLevel pre-tokenizer or decoder); " +
                                           "SentencePiece-style models need tokenizer.model.");
        if (model["vocab"] is not JsonObject vocabNode)
            throw new ModelFormatException($"{path}: model.vocab must be an object of token → id.");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in vocabNode) vocab[token] = Json.Int(id, file, $"model.vocab[\"{token}\"]");
        if (model["merges"] is not JsonArray mergeNodes)
            throw new ModelFormatException($"{path}: model.merges must be an array.");
        var merges = mergeNodes.Select(m => m switch
        {
            JsonArray { Count: 2 } pair => $"{Json.Str(pair[0], file, "model.merges")} {Json.Str(pair[1], file, "model.merges")}",
            _ => Json.Str(m, file, "model.merges"),
        }).ToList();
        return new(vocab, merges, PatternOf(json["pre_tokenizer"]), path, IsNfc(json["normalizer"]));
    }

    /// <summary>
    /// True when the normalizer is NFC (alone or inside a Sequence), as GPT-NeoX's and Qwen2's are. Other normalizers
    /// are not applied (nor were they before); NFC has its own table because the project runs with invariant
    /// globalization, where string.Normalize does nothing.
    /// </summary>
    private static bool IsNfc(JsonNode? normalizer) => Nodes(normalizer).Any(n =>
        n["type"] is JsonValue t && t.GetValueKind() == JsonValueKind.String && t.GetValue<string>() == "NFC");

    /// <summary>vocab.json + merges.txt (GPT-2 layout): GPT-2's pre-tokenizer pattern.</summary>
    public static ByteLevelBackend FromVocabAndMerges(string vocabPath, string mergesPath)
    {
        if (Json.Read(vocabPath) is not JsonObject vocabNode)
            throw new ModelFormatException($"{vocabPath}: must be a JSON object of token → id.");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in vocabNode) vocab[token] = Json.Int(id, "vocab.json", $"[\"{token}\"]");
        var merges = new List<string>();
        foreach (var line in File.ReadLines(mergesPath))
        {
            if (line.Length == 0 || line.StartsWith("#version", StringComparison.Ordinal)) continue;
            if (line.Split(' ').Length != 2)
                throw new ModelFormatException($"{mergesPath}: line '{line}' is not 'left right'.");
            merges.Add(line);
        }
        return new(vocab, merges, ByteLevel.Compile(ByteLevel.Gpt2Pattern), mergesPath);
    }

    private static Regex PatternOf(JsonNode? preTokenizer)
    {
        var split = Nodes(preTokenizer).FirstOrDefault(n => n["type"]?.GetValueKind() == JsonValueKind.String
                                                           && n["type"]!.GetValue<string>() == "Split");
        if (split?["pattern"]?["Regex"] is not JsonValue regex || regex.GetValueKind() != JsonValueKind.String)
            return ByteLevel.Compile(ByteLevel.Gpt2Pattern);
        try
        {
            // The file's own pattern is the most faithful; some (possessive quantifiers) are not .NET syntax.
            return ByteLevel.Compile(regex.GetValue<string>());
        }
        catch (ArgumentException)
        {
            return ByteLevel.Compile(ByteLevel.Qwen2Pattern);
        }
    }

    private static bool Mentions(JsonNode? node, string type) =>
        Nodes(node).Any(n => n["type"]?.GetValueKind() == JsonValueKind.String && n["type"]!.GetValue<string>() == type);

    /// <summary>The node and, for Sequence pre-tokenizers/decoders, its children.</summary>
    private static IEnumerable<JsonObject> Nodes(JsonNode? node)
    {
        if (node is not JsonObject o) yield break;
        yield return o;
        foreach (var key in new[] { "pretokenizers", "decoders", "normalizers" })
            if (o[key] is JsonArray children)
                foreach (var child in children.OfType<JsonObject>()) yield return child;
    }
}
