using System.Text.Json.Nodes;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>
/// Builds a GPT-NeoX (Pythia) style byte-level BPE: <c>&lt;|endoftext|&gt;</c> (id 0, bos = eos = unk) and
/// <c>&lt;|padding|&gt;</c> (id 1) at the head of the model vocabulary, then the 256 byte symbols and the learned
/// merges; GPT-2's pre-tokenizer pattern (ByteLevel with use_regex), NFC normalizer, no BOS added.
/// </summary>
internal static class GptNeoXBpeWriter
{
    public const string EndOfText = "<|endoftext|>";
    public const string Padding = "<|padding|>";
    public static readonly string[] SpecialTokens = [EndOfText, Padding];

    /// <summary>Vocabulary (token → id, in id order, specials included) and merges, at most <paramref name="vocabSize"/> tokens.</summary>
    public static (List<KeyValuePair<string, int>> Vocab, IReadOnlyList<(string Left, string Right)> Merges) Build(
        IEnumerable<string> corpus, int vocabSize)
    {
        var words = ByteLevelBpeWriter.WordCounts(corpus, ByteLevel.Gpt2Pattern);

        var vocab = new List<KeyValuePair<string, int>>();
        foreach (var s in SpecialTokens) vocab.Add(new(s, vocab.Count));
        var seen = new HashSet<string>(SpecialTokens, StringComparer.Ordinal);
        foreach (var b in ByteLevel.VocabOrder)
        {
            var symbol = ByteLevel.ByteToChar[b].ToString();
            seen.Add(symbol);
            vocab.Add(new(symbol, vocab.Count));
        }
        var maxMerges = Math.Max(0, vocabSize - vocab.Count);
        var merges = BpeTrainer.Train(
            words.Select(w => ((IReadOnlyList<string>)w.Key.Select(c => c.ToString()).ToList(), w.Value)), maxMerges);
        foreach (var (left, right) in merges)
            if (seen.Add(left + right)) vocab.Add(new(left + right, vocab.Count));
        return (vocab, merges);
    }

    public static JsonObject TokenizerJson(List<KeyValuePair<string, int>> vocab, IReadOnlyList<(string Left, string Right)> merges)
    {
        var vocabNode = new JsonObject();
        foreach (var (token, id) in vocab) vocabNode[token] = id;
        JsonObject ByteLevelNode(bool trimOffsets) => new()
        {
            ["type"] = "ByteLevel",
            ["add_prefix_space"] = false,
            ["trim_offsets"] = trimOffsets,
            ["use_regex"] = true,
        };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(SpecialTokens.Select((t, i) => (JsonNode)ByteLevelBpeWriter.AddedToken(i, t)).ToArray()),
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = ByteLevelNode(true),
            ["post_processor"] = ByteLevelNode(false),
            ["decoder"] = ByteLevelNode(true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["vocab"] = vocabNode,
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)$"{m.Left} {m.Right}").ToArray()),
            },
        };
    }

    public static JsonObject TokenizerConfig()
    {
        var decoder = new JsonObject();
        for (var i = 0; i < SpecialTokens.Length; i++)
        {
            var token = ByteLevelBpeWriter.AddedToken(i, SpecialTokens[i]);
            token.Remove("id");
            decoder[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = token;
        }
        return new JsonObject
        {
            ["add_bos_token"] = false,
            ["add_eos_token"] = false,
            ["add_prefix_space"] = false,
            ["added_tokens_decoder"] = decoder,
            ["bos_token"] = EndOfText,
            ["clean_up_tokenization_spaces"] = false,
            ["eos_token"] = EndOfText,
            ["model_max_length"] = 2048,
            ["pad_token"] = null,
            ["tokenizer_class"] = "GPTNeoXTokenizer",
            ["unk_token"] = EndOfText,
        };
    }

    public static JsonObject SpecialTokensMap() => new()
    {
        ["bos_token"] = EndOfText,
        ["eos_token"] = EndOfText,
        ["unk_token"] = EndOfText,
    };
}
