using System.Globalization;
using System.Text;
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

/// <summary>Writes HF-format tokenizer folders for the encoder models BERTScore uses (tiny demo models; no downloads here).</summary>
public static partial class EncoderTokenizerWriter
{
    /// <summary>[PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4 (bert-base's order, without its 99 [unused] rows).</summary>
    public static readonly IReadOnlyList<string> WordPieceSpecials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Learns a WordPiece vocabulary the way HF's WordPieceTrainer does (BPE with "##" continuations over
    /// BasicTokenizer words) and writes vocab.txt, tokenizer_config.json (BertTokenizer) and special_tokens_map.json.
    /// The vocabulary is the five special tokens, every character seen (both as a word start and as a "##"
    /// continuation, so every training word stays encodable), then the learned pieces. Returns the vocabulary size.
    /// </summary>
    public static int WriteWordPiece(string folder, IEnumerable<string> corpus, int vocabSize, bool lowerCase = true)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(corpus);
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var sentence in corpus)
            foreach (var word in WordPieceModel.BasicTokenize(sentence, lowerCase, lowerCase))
                words[word] = words.GetValueOrDefault(word) + 1;

        var symbolsByWord = words
            .Where(w => w.Key.EnumerateRunes().Count() <= WordPieceModel.MaxInputCharsPerWord)
            .Select(w => ((IReadOnlyList<string>)w.Key.EnumerateRunes().Select((r, i) => i == 0 ? r.ToString() : "##" + r).ToList(), w.Value))
            .ToList();
        var alphabet = symbolsByWord.SelectMany(w => w.Item1).Select(s => s.StartsWith("##", StringComparison.Ordinal) ? s[2..] : s)
            .Distinct(StringComparer.Ordinal).SelectMany(c => new[] { c, "##" + c })
            .Order(StringComparer.Ordinal).ToList();

        var vocab = new List<string>(WordPieceSpecials);
        vocab.AddRange(alphabet.Where(a => !WordPieceSpecials.Contains(a)));
        if (vocabSize < vocab.Count)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize,
                $"The corpus needs at least {vocab.Count} entries (special tokens and its {alphabet.Count / 2} characters).");
        var seen = new HashSet<string>(vocab, StringComparer.Ordinal);
        var merges = BpeTrainer.Train(symbolsByWord, vocabSize - vocab.Count, CombinePieces);
        foreach (var (left, right) in merges)
        {
            var piece = CombinePieces(left, right);
            if (vocab.Count < vocabSize && seen.Add(piece)) vocab.Add(piece);
        }

        Directory.CreateDirectory(folder);
        var text = new StringBuilder();
        foreach (var token in vocab) text.Append(token).Append('\n');
        File.WriteAllText(Path.Combine(folder, "vocab.txt"), text.ToString());

        var decoder = new JsonObject();
        for (var id = 0; id < WordPieceSpecials.Count; id++) decoder[Id(id)] = AddedTokenNode(WordPieceSpecials[id], lstrip: false);
        WriteJson(folder, "tokenizer_config.json", new JsonObject
        {
            ["added_tokens_decoder"] = decoder,
            ["clean_up_tokenization_spaces"] = true,
            ["cls_token"] = "[CLS]",
            ["do_basic_tokenize"] = true,
            ["do_lower_case"] = lowerCase,
            ["mask_token"] = "[MASK]",
            ["model_max_length"] = 512,
            ["never_split"] = null,
            ["pad_token"] = "[PAD]",
            ["sep_token"] = "[SEP]",
            ["strip_accents"] = null,
            ["tokenize_chinese_chars"] = true,
            ["tokenizer_class"] = "BertTokenizer",
            ["unk_token"] = "[UNK]",
        });
        WriteJson(folder, "special_tokens_map.json", new JsonObject
        {
            ["cls_token"] = "[CLS]",
            ["mask_token"] = "[MASK]",
            ["pad_token"] = "[PAD]",
            ["sep_token"] = "[SEP]",
            ["unk_token"] = "[UNK]",
        });
        return vocab.Count;
    }

    /// <summary>"th" + "##e" → "the"; "##t" + "##h" → "##th".</summary>
    private static string CombinePieces(string left, string right) =>
        left + (right.StartsWith("##", StringComparison.Ordinal) ? right[2..] : right);

    private static JsonObject AddedTokenNode(string content, bool lstrip)
    {
        var node = ByteLevelBpeWriter.AddedToken(0, content);
        node.Remove("id");
        node["lstrip"] = lstrip;
        return node;
    }

    private static string Id(int id) => id.ToString(CultureInfo.InvariantCulture);

    private static void WriteJson(string folder, string name, JsonNode node) =>
        File.WriteAllText(Path.Combine(folder, name), node.ToJsonString(JsonOptions));
}
