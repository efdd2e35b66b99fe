using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>
/// Embedded BERTScore encoders: HF-format BertModel / RobertaModel / BartModel folders with random weights, so the
/// demo and the tests need nothing downloaded.
/// </summary>
public static class EncoderPresets
{
    public static IReadOnlyList<string> Names { get; } =
        ["tiny-bert", "tiny-roberta", "tiny-bart", "small-bert", "small-roberta", "small-bart"];

    /// <summary>Shape of a preset; the vocabulary size is filled in from the tokenizer.</summary>
    public static EncoderConfig Shape(string preset)
    {
        var dash = preset?.IndexOf('-') ?? -1;
        if (preset is null || dash < 0 || !Names.Contains(preset))
            throw new ArgumentException($"unknown encoder preset '{preset}'; choose one of {string.Join(", ", Names)}.", nameof(preset));
        var small = preset.StartsWith("small", StringComparison.Ordinal);
        var shape = new EncoderConfig
        {
            HiddenSize = small ? 256 : 64,
            NumHiddenLayers = small ? 6 : 4,
            NumAttentionHeads = 4,
            IntermediateSize = small ? 1024 : 128,
        };
        return preset[(dash + 1)..] switch
        {
            "bert" => shape with
            {
                Architecture = "BertModel", ModelType = "bert", MaxPositionEmbeddings = 512, TypeVocabSize = 2,
                LayerNormEps = 1e-12, PadTokenId = 0,
            },
            "roberta" => shape with
            {
                // 512 usable positions after the pad offset, as roberta-base/large ship.
                Architecture = "RobertaModel", ModelType = "roberta", MaxPositionEmbeddings = 514, TypeVocabSize = 1,
                LayerNormEps = 1e-5, PadTokenId = 1, BosTokenId = 0, EosTokenId = 2,
            },
            _ => shape with
            {
                // 1024 positions in config.json; the learned table has 1026 rows (offset 2).
                Architecture = "BartModel", ModelType = "bart", MaxPositionEmbeddings = 1024, TypeVocabSize = 0,
                LayerNormEps = 1e-5, PadTokenId = 1, BosTokenId = 0, EosTokenId = 2,
                DecoderLayers = shape.NumHiddenLayers, DecoderAttentionHeads = shape.NumAttentionHeads,
                DecoderFfnDim = shape.IntermediateSize,
            },
        };
    }

    /// <summary>
    /// Writes a complete preset folder with the matching tokenizer (WordPiece for BERT, byte-level BPE for RoBERTa and
    /// BART) trained on the shipped demo text, so every demo sentence tokenizes into real subwords.
    /// </summary>
    public static EncoderConfig Initialize(string folder, string preset, long seed = 0)
    {
        var corpus = DemoCorpus.Sentences
            .Concat(DemoData.References.SelectMany(r => new[] { r.Prompt, r.Reference }))
            .Concat(DemoData.Preferences.SelectMany(p => new[] { p.Chosen, p.Rejected }))
            .ToList();
        var vocab = preset.StartsWith("small", StringComparison.Ordinal) ? 4000 : 1500;
        return Initialize(folder, preset, seed, f => Shape(preset).ModelType == "bert"
            ? EncoderTokenizerWriter.WriteWordPiece(f, corpus, vocab)
            : EncoderTokenizerWriter.WriteRobertaBpe(f, corpus, vocab));
    }

    /// <summary>
    /// Writes config.json, model.safetensors (random weights from <paramref name="seed"/>) and, through
    /// <paramref name="writeTokenizer"/>, the tokenizer files into <paramref name="folder"/>. The tokenizer writer returns
    /// its vocabulary size and must place the special tokens where HF's tokenizers do: BERT [PAD] = 0; RoBERTa/BART
    /// &lt;s&gt; = 0, &lt;pad&gt; = 1, &lt;/s&gt; = 2.
    /// </summary>
    public static EncoderConfig Initialize(string folder, string preset, long seed, Func<string, int> writeTokenizer)
    {
        ArgumentNullException.ThrowIfNull(writeTokenizer);
        var shape = Shape(preset);
        Directory.CreateDirectory(folder);
        var vocab = writeTokenizer(folder);
        if (vocab <= shape.PadTokenId)
            throw new ArgumentException($"tokenizer for '{preset}' reported {vocab} tokens; pad id {shape.PadTokenId} must fit.", nameof(writeTokenizer));
        var config = shape with { VocabSize = vocab };
        using var model = new TransformerEncoder(config);
        model.InitializeWeights(seed);
        model.SavePretrained(folder);
        return config;
    }

    /// <summary>
    /// bert_score's default layer for <paramref name="modelTypeOrName"/> (hub name, or one of our presets, where it is
    /// the number of layers minus 1, at least 1). A path's last segment is tried as well.
    /// </summary>
    public static int DefaultLayers(string modelTypeOrName)
    {
        if (BertScoreLayers.Find(modelTypeOrName) is { } known) return known;
        var name = Path.GetFileName(modelTypeOrName.Trim().TrimEnd('/', '\\'));
        if (Names.Contains(name)) return Math.Max(1, Shape(name).NumHiddenLayers - 1);
        throw new ArgumentException(
            $"no default layer for '{modelTypeOrName}'; known: {string.Join(", ", BertScoreLayers.KnownNames.Concat(Names))}. Pass num_layers explicitly.",
            nameof(modelTypeOrName));
    }
}
