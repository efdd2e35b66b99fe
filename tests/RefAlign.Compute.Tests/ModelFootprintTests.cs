using System.Text.Json.Nodes;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// What a config.json commits a process to, known before anything is allocated: the tensors it implies are exactly the
/// module's, sizes outside their bounds are refused by field, and a folder whose config claims a huge model is checked
/// from its headers alone.
/// </summary>
public sealed class ModelFootprintTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-footprint-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    public static TheoryData<string, CausalLmConfig> Decoders()
    {
        var llama = TinyModels.Llama();
        var neox = llama with { Architecture = CausalLmConfig.GptNeoXArchitecture, NumKeyValueHeads = 4, RotaryPct = 0.5, QkvBias = true, OutputBias = true, MlpBias = true };
        return new()
        {
            { "llama untied", llama },
            { "llama tied", llama with { TieWordEmbeddings = true } },
            { "llama biases", llama with { QkvBias = true, OutputBias = true, MlpBias = true } },
            { "llama gqa 1", llama with { NumKeyValueHeads = 1 } },
            { "qwen2", llama with { Architecture = "Qwen2ForCausalLM", QkvBias = true, TieWordEmbeddings = true } },
            { "mistral", llama with { Architecture = "MistralForCausalLM", SlidingWindow = 16 } },
            { "neox", neox },
            { "neox no attention bias, tied", neox with { QkvBias = false, OutputBias = false, TieWordEmbeddings = true } },
        };
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void A_decoders_tensors_from_its_config_are_exactly_its_modules(string label, CausalLmConfig config)
    {
        using var model = new CausalLm(config);
        var module = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var implied = ModelFootprint.Tensors(config).ToDictionary(t => t.Name, t => t.Shape);
        Assert.True(module.Keys.Order().SequenceEqual(implied.Keys.Order()), $"{label}: module {string.Join(",", module.Keys.Except(implied.Keys))} / config {string.Join(",", implied.Keys.Except(module.Keys))}");
        foreach (var (name, shape) in module) Assert.True(shape.SequenceEqual(implied[name]), $"{label}: {name}");
        Assert.Equal((double)module.Values.Sum(s => s.Aggregate(1L, (n, d) => n * d)), ModelFootprint.Parameters(config));
    }

    [Theory]
    [InlineData("tiny-bert")]
    [InlineData("tiny-roberta")]
    [InlineData("tiny-bart")]
    public void An_encoders_tensors_from_its_config_are_exactly_its_modules(string preset)
    {
        foreach (var config in new[] { EncoderPresets.Shape(preset) with { VocabSize = 97 }, EncoderPresets.Shape(preset) with { VocabSize = 97, TypeVocabSize = 0 } })
        {
            using var model = new TransformerEncoder(config);
            var module = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
            var implied = ModelFootprint.Tensors(config).ToDictionary(t => t.Name, t => t.Shape);
            Assert.Equal(module.Keys.Order(), implied.Keys.Order());
            foreach (var (name, shape) in module) Assert.True(shape.SequenceEqual(implied[name]), $"{preset}: {name}");
            Assert.Equal((double)module.Values.Sum(s => s.Aggregate(1L, (n, d) => n * d)), ModelFootprint.Parameters(config));
        }
    }

    string Folder(string arch = "llama")
    {
        var dir = Path.Combine(_root, $"{arch}-{Guid.NewGuid():N}");
        ModelPresets.Initialize(dir, "tiny", arch, seed: 3);
        return dir;
    }

    static void Edit(string folder, Action<JsonObject> change)
    {
        var path = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        change(config);
        File.WriteAllText(path, config.ToJsonString());
    }

    [Fact]
    public void A_config_claiming_a_huge_model_is_checked_from_the_headers_without_building_it()
    {
        // The probe's 640 KiB folder: 40 layers, hidden 4096, intermediate 16384 — some 8e9 parameters (32 GB in float32)
        // over the tiny weights of a preset. Building it would take the machine's memory; the check reads headers only.
        var folder = Folder();
        Edit(folder, c =>
        {
            c["num_hidden_layers"] = 40;
            c["hidden_size"] = 4096;
            c["intermediate_size"] = 16384;
            c["num_attention_heads"] = 32;
            c["num_key_value_heads"] = 8;
            c["head_dim"] = 128;
        });
        var claimed = CausalLmConfig.Load(folder);
        Assert.True(ModelFootprint.Parameters(claimed) * 4 > 30e9);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.CheckPretrained(folder));
        Assert.Contains("model.embed_tokens.weight", e.Message);
        Assert.Contains("[", e.Message); // the shapes side by side

        // Loading it is refused before the module exists when it exceeds this machine's memory, naming the sizes.
        Edit(folder, c => c["vocab_size"] = 1 << 24);
        var big = Assert.Throws<ModelTooLargeException>(() => CausalLm.FromPretrained(folder));
        Assert.Contains("vocab_size 16777216", big.Message);
        Assert.Contains("hidden_size 4096", big.Message);
        Assert.Contains("this machine's memory", big.Message);
    }

    [Fact]
    public void A_well_formed_folder_passes_the_header_check_and_a_wrong_shape_is_named()
    {
        foreach (var arch in ModelPresets.Architectures)
            CausalLm.CheckPretrained(Folder(arch));
        var folder = Folder();
        Edit(folder, c => c["intermediate_size"] = c["intermediate_size"]!.GetValue<int>() + 8);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.CheckPretrained(folder));
        Assert.Contains("mlp.gate_proj.weight", e.Message);
        Assert.Contains("has shape", e.Message);

        var encoder = Path.Combine(_root, "enc");
        EncoderPresets.Initialize(encoder, "tiny-bert", seed: 2);
        TransformerEncoder.CheckPretrained(encoder);
        Edit(encoder, c => c["num_hidden_layers"] = 6);
        Assert.Contains("encoder.layer.4", Assert.Throws<ModelFormatException>(() => TransformerEncoder.CheckPretrained(encoder)).Message);
    }

    [Theory]
    [InlineData("vocab_size", 0)]
    [InlineData("vocab_size", -5)]
    [InlineData("hidden_size", 0)]
    [InlineData("hidden_size", 1_000_000)]
    [InlineData("intermediate_size", -1)]
    [InlineData("num_hidden_layers", 0)]
    [InlineData("num_hidden_layers", 2_000_000_000)]
    [InlineData("num_attention_heads", 0)]
    [InlineData("num_key_value_heads", 0)]
    [InlineData("head_dim", -64)]
    [InlineData("max_position_embeddings", 0)]
    [InlineData("vocab_size", 2147483648.0)]
    [InlineData("hidden_size", 1e20)]
    public void A_size_out_of_bounds_is_refused_naming_the_field(string field, double value)
    {
        var folder = Folder();
        Edit(folder, c => c[field] = value);
        var e = Assert.Throws<ModelFormatException>(() => CausalLmConfig.Load(folder));
        Assert.Contains($"'{field}'", e.Message);
    }
}
