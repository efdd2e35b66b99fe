using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>Writes HF-format tokenizer files for the tiny models we generate (no downloads here).</summary>
public static class TokenizerWriter
{
    // Keep "▁"/"Ġ" readable in the files; the output is still valid JSON for HF.
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Llama-2 style SentencePiece folder: tokenizer.model, tokenizer_config.json, special_tokens_map.json.</summary>
    public static int WriteSentencePiece(string folder, IEnumerable<string> corpus, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 259 + 1, nameof(vocabSize)); // specials + bytes + "▁"
        Directory.CreateDirectory(folder);
        var pieces = SentencePieceModelWriter.BuildLlamaStyle(corpus, vocabSize);
        SentencePieceModelWriter.Write(Path.Combine(folder, "tokenizer.model"), pieces);

        var decoder = new JsonObject();
        string[] specials = ["<unk>", "<s>", "</s>"];
        for (var i = 0; i < specials.Length; i++)
        {
            var token = ByteLevelBpeWriter.AddedToken(i, specials[i]);
            token.Remove("id");
            decoder[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = token;
        }
        WriteJson(folder, "tokenizer_config.json", new JsonObject
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["added_tokens_decoder"] = decoder,
            ["bos_token"] = "<s>",
            ["clean_up_tokenization_spaces"] = false,
            ["eos_token"] = "</s>",
            ["legacy"] = true,
            ["model_max_length"] = 2048,
            ["pad_token"] = null,
            ["sp_model_kwargs"] = new JsonObject(),
            ["tokenizer_class"] = "LlamaTokenizer",
            ["unk_token"] = "<unk>",
        });
        WriteJson(folder, "special_tokens_map.json", new JsonObject
        {
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["unk_token"] = "<unk>",
        });
        return pieces.Count;
    }

    /// <summary>Qwen2 style byte-level BPE folder: vocab.json, merges.txt, tokenizer.json, tokenizer_config.json.</summary>
    public static int WriteByteLevelBpe(string folder, IEnumerable<string> corpus, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 256 + ByteLevelBpeWriter.SpecialTokens.Length, nameof(vocabSize));
        Directory.CreateDirectory(folder);
        var (vocab, merges) = ByteLevelBpeWriter.Build(corpus, vocabSize);

        var vocabNode = new JsonObject();
        foreach (var (token, id) in vocab) vocabNode[token] = id;
        WriteJson(folder, "vocab.json", vocabNode);
        File.WriteAllLines(Path.Combine(folder, "merges.txt"), merges.Select(m => $"{m.Left} {m.Right}").Prepend("#version: 0.2"));
        WriteJson(folder, "tokenizer.json", ByteLevelBpeWriter.TokenizerJson(vocab, merges));
        WriteJson(folder, "tokenizer_config.json", ByteLevelBpeWriter.TokenizerConfig(vocab.Count));
        return vocab.Count + ByteLevelBpeWriter.SpecialTokens.Length;
    }

    /// <summary>
    /// GPT-NeoX (Pythia) style byte-level BPE folder: tokenizer.json (specials at ids 0 and 1 inside the model vocab),
    /// tokenizer_config.json, special_tokens_map.json. Returns the vocabulary size.
    /// </summary>
    public static int WriteGptNeoXBpe(string folder, IEnumerable<string> corpus, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 256 + GptNeoXBpeWriter.SpecialTokens.Length, nameof(vocabSize));
        Directory.CreateDirectory(folder);
        var (vocab, merges) = GptNeoXBpeWriter.Build(corpus, vocabSize);
        WriteJson(folder, "tokenizer.json", GptNeoXBpeWriter.TokenizerJson(vocab, merges));
        WriteJson(folder, "tokenizer_config.json", GptNeoXBpeWriter.TokenizerConfig());
        WriteJson(folder, "special_tokens_map.json", GptNeoXBpeWriter.SpecialTokensMap());
        return vocab.Count;
    }

    private static void WriteJson(string folder, string name, JsonNode node) =>
        File.WriteAllText(Path.Combine(folder, name), node.ToJsonString(JsonOptions));
}
