using System.Text.Json.Nodes;
using RefAlign.Presets;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>Folders written by <see cref="ModelPresets"/> load back exactly, and every kind of bad folder fails clearly.</summary>
public sealed class ModelFolderTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-model-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Init(string arch = "llama", string name = "m")
    {
        var dir = Path.Combine(_root, name);
        ModelPresets.Initialize(dir, "tiny", arch, seed: 5);
        return dir;
    }

    static float[] Logits(CausalLm m, long[] ids)
    {
        using var _ = no_grad();
        using var l = m.Forward(tensor(ids, [1, ids.Length]));
        return l.to(ScalarType.Float32).data<float>().ToArray();
    }

    [Theory]
    [InlineData("llama", "LlamaForCausalLM", "tokenizer.model")]
    [InlineData("mistral", "MistralForCausalLM", "tokenizer.model")]
    [InlineData("qwen2", "Qwen2ForCausalLM", "tokenizer.json")]
    [InlineData("gpt-neox", "GPTNeoXForCausalLM", "tokenizer.json")]
    public void InitWritesCompleteHfFolderThatLoads(string arch, string architecture, string tokenizerFile)
    {
        var dir = Init(arch);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json", tokenizerFile })
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        Assert.Equal(architecture, cfg["architectures"]![0]!.GetValue<string>());
        using var m = CausalLm.FromPretrained(dir);
        var tok = TextTokenizer.Load(dir);
        Assert.True(tok.VocabSize <= m.Config.VocabSize);
        Assert.Contains(m.Config.EosTokenIds[0], tok.EosIds);
        var ids = tok.Encode("Hello there, how are you?").Select(i => (long)i).ToArray();
        Assert.All(Logits(m, ids), x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void SameSeedSameWeightsDifferentSeedDifferentWeights()
    {
        var a = Init(name: "a");
        var b = Init(name: "b");
        ModelPresets.Initialize(Path.Combine(_root, "c"), "tiny", "llama", seed: 6);
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(a, "model.safetensors")), File.ReadAllBytes(Path.Combine(_root, "c", "model.safetensors")));
    }

    [Fact]
    public void SavedFolderLoadsBackBitIdenticallyAndShardedGivesSameLogits()
    {
        var dir = Init();
        using var m = CausalLm.FromPretrained(dir);
        var again = Path.Combine(_root, "again");
        m.SavePretrained(again);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "model.safetensors")), File.ReadAllBytes(Path.Combine(again, "model.safetensors")));

        var sharded = Path.Combine(_root, "sharded");
        m.SavePretrained(sharded, maxShardBytes: 100_000);
        Assert.True(File.Exists(Path.Combine(sharded, ModelWeights.IndexFile)));
        Assert.True(Directory.GetFiles(sharded, "model-*-of-*.safetensors").Length > 2);
        using var m2 = CausalLm.FromPretrained(sharded);
        long[] ids = [1, 50, 60, 70, 80];
        Assert.Equal(Logits(m, ids), Logits(m2, ids));
    }

    [Fact]
    public void Bf16LoadRunsAndStaysCloseToFloat32()
    {
        var dir = Init();
        using var f32 = CausalLm.FromPretrained(dir);
        using var bf16 = CausalLm.FromPretrained(dir, ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, bf16.DType);
        Assert.All(bf16.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        long[] ids = [1, 50, 60, 70, 80];
        var a = Logits(f32, ids);
        var b = Logits(bf16, ids);
        Assert.True(a.Zip(b).Max(t => Math.Abs(t.First - t.Second)) < 0.05);
    }

    [Fact]
    public void MissingTensorNamesFileAndTensor()
    {
        var dir = Init();
        var path = Path.Combine(dir, "model.safetensors");
        var tensors = SafeTensors.LoadFile(path);
        tensors.Remove("model.layers.1.mlp.up_proj.weight");
        SafeTensors.SaveFile(path, tensors);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
    }

    [Fact]
    public void MisshapenTensorNamesFileTensorAndShapes()
    {
        var dir = Init();
        var path = Path.Combine(dir, "model.safetensors");
        var tensors = SafeTensors.LoadFile(path);
        tensors["model.layers.0.self_attn.k_proj.weight"] = zeros(16, 64);
        SafeTensors.SaveFile(path, tensors);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", e.Message);
        Assert.Contains("[16, 64]", e.Message);
        Assert.Contains("[32, 64]", e.Message);
    }

    [Fact]
    public void UnexpectedTensorIsReported()
    {
        var dir = Init();
        var path = Path.Combine(dir, "model.safetensors");
        var tensors = SafeTensors.LoadFile(path);
        tensors["model.layers.9.mlp.up_proj.weight"] = zeros(2, 2);
        SafeTensors.SaveFile(path, tensors);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("model.layers.9.mlp.up_proj.weight", e.Message);
    }

    [Fact]
    public void TruncatedWeightsFileIsAClearError()
    {
        var dir = Init();
        var path = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Theory]
    [InlineData("architectures", "[\"GPT2LMHeadModel\"]", "GPT2LMHeadModel")]
    [InlineData("num_key_value_heads", "3", "num_key_value_heads")]
    [InlineData("hidden_act", "\"relu\"", "hidden_act")]
    [InlineData("rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 2}", "rope_scaling.rope_type")]
    [InlineData("num_hidden_layers", "\"two\"", "num_hidden_layers")]
    public void BadConfigNamesTheField(string field, string json, string expected)
    {
        var dir = Init();
        var path = Path.Combine(dir, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        cfg[field] = JsonNode.Parse(json);
        File.WriteAllText(path, cfg.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("config.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingConfigAndMissingTokenizerAreClearErrors()
    {
        var dir = Init();
        File.Delete(Path.Combine(dir, "tokenizer.model"));
        var t = Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(dir));
        Assert.Contains("tokenizer.model", t.Message);
        File.Delete(Path.Combine(dir, "config.json"));
        var c = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("config.json", c.Message);
    }
}
