using System.Text.Json.Nodes;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

public static partial class EncoderTokenizerWriter
{
    /// <summary>RoBERTa's layout: &lt;s&gt; 0, &lt;pad&gt; 1, &lt;/s&gt; 2, &lt;unk&gt; 3, …, &lt;mask&gt; last.</summary>
    public static readonly IReadOnlyList<string> RobertaLeadingSpecials = ["<s>", "<pad>", "</s>", "<unk>"];

    public const string RobertaMask = "<mask>";

    /// <summary>
    /// Learns a GPT-2 style byte-level BPE (GPT-2 pre-tokenizer over each sentence with a prefix space, as
    /// bert_score encodes) and writes vocab.json (the four leading specials, the 256 byte symbols in GPT-2 order,
    /// the merged tokens, &lt;mask&gt;), merges.txt, tokenizer_config.json (RobertaTokenizer, add_prefix_space false
    /// like roberta-large, model_max_length 512) and special_tokens_map.json. Returns the vocabulary size.
    /// </summary>
    public static int WriteRobertaBpe(string folder, IEnumerable<string> corpus, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(corpus);
        var minimum = RobertaLeadingSpecials.Count + 256 + 1;
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, minimum, nameof(vocabSize));

        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var sentence in corpus)
            foreach (var word in RobertaBpeModel.PreTokenize(" " + sentence))
            {
                var symbols = ByteLevel.Encode(word);
                words[symbols] = words.GetValueOrDefault(symbols) + 1;
            }

        var vocab = new List<string>(RobertaLeadingSpecials);
        vocab.AddRange(ByteLevel.VocabOrder.Select(b => ByteLevel.ByteToChar[b].ToString()));
        var seen = new HashSet<string>(vocab, StringComparer.Ordinal);
        var merges = BpeTrainer.Train(
            words.Select(w => ((IReadOnlyList<string>)w.Key.Select(c => c.ToString()).ToList(), w.Value)), vocabSize - minimum);
        foreach (var (left, right) in merges)
            if (seen.Add(left + right)) vocab.Add(left + right);
        vocab.Add(RobertaMask);

        Directory.CreateDirectory(folder);
        var vocabNode = new JsonObject();
        for (var id = 0; id < vocab.Count; id++) vocabNode[vocab[id]] = id;
        WriteJson(folder, "vocab.json", vocabNode);
        File.WriteAllText(Path.Combine(folder, "merges.txt"),
            string.Concat(merges.Select(m => $"{m.Left} {m.Right}\n").Prepend("#version: 0.2\n")));

        var decoder = new JsonObject();
        for (var id = 0; id < RobertaLeadingSpecials.Count; id++) decoder[Id(id)] = AddedTokenNode(RobertaLeadingSpecials[id], lstrip: false);
        decoder[Id(vocab.Count - 1)] = AddedTokenNode(RobertaMask, lstrip: true);
        WriteJson(folder, "tokenizer_config.json", new JsonObject
        {
            ["add_prefix_space"] = false,
            ["added_tokens_decoder"] = decoder,
            ["bos_token"] = "<s>",
            ["clean_up_tokenization_spaces"] = true,
            ["cls_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["errors"] = "replace",
            ["mask_token"] = RobertaMask,
            ["model_max_length"] = 512,
            ["pad_token"] = "<pad>",
            ["sep_token"] = "</s>",
            ["tokenizer_class"] = "RobertaTokenizer",
            ["trim_offsets"] = true,
            ["unk_token"] = "<unk>",
        });
        WriteJson(folder, "special_tokens_map.json", new JsonObject
        {
            ["bos_token"] = "<s>",
            ["cls_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["mask_token"] = AddedTokenNode(RobertaMask, lstrip: true),
            ["pad_token"] = "<pad>",
            ["sep_token"] = "</s>",
            ["unk_token"] = "<unk>",
        });
        return vocab.Count;
    }
}
