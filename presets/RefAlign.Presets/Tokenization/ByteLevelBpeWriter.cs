using System.Text.Json.Nodes;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>Builds a Qwen2-style byte-level BPE: 256 byte symbols, learned merges, three added special tokens.</summary>
internal static class ByteLevelBpeWriter
{
    public static readonly string[] SpecialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    /// <summary>Vocabulary (token → id, in id order) and merges for at most <paramref name="vocabSize"/> tokens
    /// including the special tokens.</summary>
    /// <summary>How often each pre-tokenized word (byte-level symbols) occurs in <paramref name="corpus"/>, split by <paramref name="pattern"/>.</summary>
    internal static Dictionary<string, int> WordCounts(IEnumerable<string> corpus, string pattern)
    {
        var regex = ByteLevel.Compile(pattern);
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var sentence in corpus)
            foreach (var match in regex.EnumerateMatches(sentence))
            {
                var word = ByteLevel.Encode(sentence.Substring(match.Index, match.Length));
                words[word] = words.GetValueOrDefault(word) + 1;
            }
        return words;
    }

    public static (List<KeyValuePair<string, int>> Vocab, IReadOnlyList<(string Left, string Right)> Merges) Build(
        IEnumerable<string> corpus, int vocabSize)
    {
        var words = WordCounts(corpus, ByteLevel.Qwen2Pattern);

        var vocab = new List<KeyValuePair<string, int>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var b in ByteLevel.VocabOrder)
        {
            var symbol = ByteLevel.ByteToChar[b].ToString();
            seen.Add(symbol);
            vocab.Add(new(symbol, vocab.Count));
        }
        var maxMerges = Math.Max(0, vocabSize - vocab.Count - SpecialTokens.Length);
        var merges = BpeTrainer.Train(
            words.Select(w => ((IReadOnlyList<string>)w.Key.Select(c => c.ToString()).ToList(), w.Value)), maxMerges);
        foreach (var (left, right) in merges)
            if (seen.Add(left + right)) vocab.Add(new(left + right, vocab.Count));
        return (vocab, merges);
    }

    public static JsonObject AddedToken(int id, string content) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = false,
        ["lstrip"] = false,
        ["rstrip"] = false,
        ["normalized"] = false,
        ["special"] = true,
    };

    public static JsonObject TokenizerJson(List<KeyValuePair<string, int>> vocab, IReadOnlyList<(string Left, string Right)> merges)
    {
        var vocabNode = new JsonObject();
        foreach (var (token, id) in vocab) vocabNode[token] = id;
        JsonObject ByteLevelNode() => new()
        {
            ["type"] = "ByteLevel",
            ["add_prefix_space"] = false,
            ["trim_offsets"] = false,
            ["use_regex"] = false,
        };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(SpecialTokens.Select((t, i) => (JsonNode)AddedToken(vocab.Count + i, t)).ToArray()),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = ByteLevel.Qwen2Pattern },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    ByteLevelNode()),
            },
            ["post_processor"] = ByteLevelNode(),
            ["decoder"] = ByteLevelNode(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["vocab"] = vocabNode,
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)$"{m.Left} {m.Right}").ToArray()),
            },
        };
    }

    public static JsonObject TokenizerConfig(int firstSpecialId)
    {
        var decoder = new JsonObject();
        for (var i = 0; i < SpecialTokens.Length; i++)
        {
            var token = AddedToken(firstSpecialId + i, SpecialTokens[i]);
            token.Remove("id");
            decoder[(firstSpecialId + i).ToString(System.Globalization.CultureInfo.InvariantCulture)] = token;
        }
        return new JsonObject
        {
            ["add_bos_token"] = false,
            ["add_prefix_space"] = false,
            ["added_tokens_decoder"] = decoder,
            ["additional_special_tokens"] = new JsonArray("<|im_start|>", "<|im_end|>"),
            ["bos_token"] = null,
            ["clean_up_tokenization_spaces"] = false,
            ["eos_token"] = "<|endoftext|>",
            ["errors"] = "replace",
            ["model_max_length"] = 32768,
            ["pad_token"] = "<|endoftext|>",
            ["split_special_tokens"] = false,
            ["tokenizer_class"] = "Qwen2Tokenizer",
            ["unk_token"] = null,
        };
    }
}
