using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>
/// The embedded default models: HF-format folders with random weights and a tokenizer trained on the shipped demo
/// corpus, so the demo and the tests need nothing downloaded.
/// </summary>
public static class ModelPresets
{
    public static IReadOnlyList<string> Names { get; } = ["tiny", "small"];
    public static IReadOnlyList<string> Architectures { get; } = ["llama", "mistral", "qwen2", "gpt-neox"];

    /// <summary>Shape of a preset; the vocabulary size is the tokenizer's target and may end smaller.</summary>
    public static CausalLmConfig Shape(string preset) => preset switch
    {
        "tiny" => new CausalLmConfig
        {
            VocabSize = 512, HiddenSize = 64, IntermediateSize = 176, NumHiddenLayers = 2,
            NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 16, MaxPositionEmbeddings = 1024,
        },
        "small" => new CausalLmConfig
        {
            VocabSize = 2048, HiddenSize = 512, IntermediateSize = 1408, NumHiddenLayers = 6,
            NumAttentionHeads = 8, NumKeyValueHeads = 4, HeadDim = 64, MaxPositionEmbeddings = 2048,
        },
        _ => throw new ArgumentException($"unknown preset '{preset}'; choose one of {string.Join(", ", Names)}.", nameof(preset)),
    };

    /// <summary>Writes config.json, generation_config.json, model.safetensors and tokenizer files into <paramref name="folder"/>.</summary>
    public static CausalLmConfig Initialize(string folder, string preset = "tiny", string architecture = "llama", long seed = 0)
    {
        var shape = Shape(preset);
        Directory.CreateDirectory(folder);
        int vocab;
        CausalLmConfig config;
        switch (architecture)
        {
            case "llama" or "mistral":
                vocab = TokenizerWriter.WriteSentencePiece(folder, DemoCorpus.Sentences, shape.VocabSize);
                config = shape with
                {
                    Architecture = architecture == "llama" ? "LlamaForCausalLM" : "MistralForCausalLM",
                    BosTokenId = 1, EosTokenIds = [2],
                    SlidingWindow = architecture == "mistral" ? shape.MaxPositionEmbeddings / 2 : null,
                };
                break;
            case "qwen2":
                vocab = TokenizerWriter.WriteByteLevelBpe(folder, DemoCorpus.Sentences, shape.VocabSize);
                var tok = TextTokenizer.Load(folder);
                config = shape with
                {
                    Architecture = "Qwen2ForCausalLM", QkvBias = true, TieWordEmbeddings = true, RopeTheta = 1_000_000,
                    EosTokenIds = tok.EosIds, PadTokenId = tok.PadId, BosTokenId = null,
                };
                break;
            case "gpt-neox":
                // Pythia's layout: specials at ids 0/1, untied embed_out, parallel residual, rotary on a quarter of
                // each head (so partial rotary is exercised), 4·hidden MLP.
                vocab = TokenizerWriter.WriteGptNeoXBpe(folder, DemoCorpus.Sentences, shape.VocabSize);
                config = shape with
                {
                    Architecture = CausalLmConfig.GptNeoXArchitecture, NumKeyValueHeads = shape.NumAttentionHeads,
                    IntermediateSize = 4 * shape.HiddenSize, HiddenAct = "gelu", RotaryPct = 0.25, UseParallelResidual = true,
                    LayerNormEps = 1e-5, QkvBias = true, OutputBias = true, MlpBias = true, TieWordEmbeddings = false,
                    BosTokenId = 0, EosTokenIds = [0],
                };
                break;
            default:
                throw new ArgumentException(
                    $"unknown architecture '{architecture}'; choose one of {string.Join(", ", Architectures)}.", nameof(architecture));
        }
        // Round the embedding table up to a multiple of 64, as released checkpoints do; extra rows are never produced
        // by the tokenizer.
        config = config with { VocabSize = (vocab + 63) / 64 * 64 };
        using var model = new CausalLm(config);
        model.InitializeWeights(seed);
        model.SavePretrained(folder);
        return config;
    }
}
