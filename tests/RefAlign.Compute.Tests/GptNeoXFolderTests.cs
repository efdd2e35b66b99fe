using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Tokenization;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>GPT-NeoX (Pythia) folders: config.json fields, HF tensor names, legacy buffers, the preset, its tokenizer, LoRA.</summary>
public sealed class GptNeoXFolderTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-neoxf-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    // A pythia-70m-deduped config.json, shrunk.
    const string PythiaConfig = """
        {
          "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "classifier_dropout": 0.1, "eos_token_id": 0,
          "hidden_act": "gelu", "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 128,
          "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 4,
          "num_hidden_layers": 2, "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": false,
          "torch_dtype": "float16", "transformers_version": "4.24.0", "use_cache": true, "use_parallel_residual": true,
          "vocab_size": 96
        }
        """;

    string WriteConfig(string json, string name = "cfg")
    {
        var dir = Path.Combine(_root, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), json);
        return dir;
    }

    static JsonObject Edit(string json, string field, string? value)
    {
        var o = JsonNode.Parse(json)!.AsObject();
        if (value is null) o.Remove(field);
        else o[field] = JsonNode.Parse(value);
        return o;
    }

    static float[] Logits(CausalLm m, long[] ids)
    {
        using var _ = no_grad();
        using var x = tensor(ids, [1, ids.Length]);
        using var l = m.Forward(x);
        return l.data<float>().ToArray();
    }

    [Fact]
    public void PythiaConfigParsesAndSavesWithTheSameHfFields()
    {
        var c = CausalLmConfig.Load(WriteConfig(PythiaConfig));
        Assert.True(c.IsGptNeoX);
        Assert.Equal((8, 4, 2, 4), (c.HeadDim, c.NumKeyValueHeads, c.RotaryDims, c.NumAttentionHeads));
        Assert.Equal((0.25, 10000.0, 1e-5, true, "gelu"), (c.RotaryPct, c.RopeTheta, c.LayerNormEps, c.UseParallelResidual, c.HiddenAct));
        Assert.True(c.QkvBias && c.OutputBias && c.MlpBias);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(0, c.BosTokenId);
        Assert.Equal([0], c.EosTokenIds);

        var saved = c.ToJson();
        foreach (var f in new[] { "rotary_pct", "rotary_emb_base", "use_parallel_residual", "layer_norm_eps", "hidden_act",
                     "intermediate_size", "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id", "attention_bias" })
            Assert.True(saved.ContainsKey(f), f);
        Assert.Equal("gpt_neox", saved["model_type"]!.GetValue<string>());
        Assert.False(saved.ContainsKey("rms_norm_eps"));
        Assert.Equal(c, CausalLmConfig.Parse(saved, "saved") with { EosTokenIds = c.EosTokenIds });
    }

    [Fact]
    public void NewerRopeParametersAndDefaultsFollowTransformers()
    {
        var j = Edit(PythiaConfig, "rotary_pct", null);
        j.Remove("rotary_emb_base");
        j.Remove("bos_token_id");
        j.Remove("eos_token_id");
        j.Remove("use_parallel_residual");
        j["rope_parameters"] = JsonNode.Parse("""{"rope_type": "default", "rope_theta": 500, "partial_rotary_factor": 0.5}""");
        var c = CausalLmConfig.Parse(j, "config.json");
        Assert.Equal((500.0, 4, true), (c.RopeTheta, c.RotaryDims, c.UseParallelResidual));
        Assert.Null(c.RopeScaling);
        Assert.Equal(0, c.BosTokenId); // GPTNeoXConfig's defaults: bos 0, eos 2
        Assert.Equal([2], c.EosTokenIds);
        j.Remove("rope_parameters");
        Assert.Equal((10000.0, 2), (CausalLmConfig.Parse(j, "c").RopeTheta, CausalLmConfig.Parse(j, "c").RotaryDims)); // rotary_pct 0.25
    }

    [Theory]
    [InlineData("hidden_act", "\"relu\"", "hidden_act")]
    [InlineData("hidden_act", "\"silu\"", "hidden_act")]
    [InlineData("rotary_pct", "0.1", "rotary_pct")]
    [InlineData("hidden_size", "30", "hidden_size")]
    [InlineData("intermediate_size", null, "intermediate_size")]
    [InlineData("rope_scaling", "{\"type\": \"yarn\", \"factor\": 2}", "rope_scaling.rope_type")]
    public void BadConfigNamesFileAndField(string field, string? json, string expected)
    {
        var dir = WriteConfig(Edit(PythiaConfig, field, json).ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("config.json", e.Message, StringComparison.Ordinal);
        Assert.Contains($"'{expected}'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SaveLoadKeepsHfTensorNamesAndValuesSingleAndSharded()
    {
        var cfg = GptNeoXForwardTests.Small();
        var dir = Path.Combine(_root, "m");
        using var m = new CausalLm(cfg);
        m.InitializeWeights(3);
        ReferenceForwardTests.RandomiseNormsAndBiases(m, 4);
        m.SavePretrained(dir);

        string[] perLayer =
        [
            "input_layernorm.weight", "input_layernorm.bias", "post_attention_layernorm.weight", "post_attention_layernorm.bias",
            "attention.query_key_value.weight", "attention.query_key_value.bias", "attention.dense.weight", "attention.dense.bias",
            "mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias", "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias",
        ];
        string[] expected =
        [
            "gpt_neox.embed_in.weight", "gpt_neox.final_layer_norm.weight", "gpt_neox.final_layer_norm.bias", "embed_out.weight",
            .. Enumerable.Range(0, 2).SelectMany(i => perLayer.Select(n => $"gpt_neox.layers.{i}.{n}")),
        ];
        var header = SafeTensors.ReadHeader(Path.Combine(dir, ModelWeights.SingleFile), out _);
        Assert.Equal(expected.Order(StringComparer.Ordinal), header.Keys.Order(StringComparer.Ordinal));
        Assert.Equal([96L, 32L], header["gpt_neox.layers.1.attention.query_key_value.weight"].Shape);
        Assert.Equal([64L, 32L], header["gpt_neox.layers.0.mlp.dense_h_to_4h.weight"].Shape);

        using var back = CausalLm.FromPretrained(dir);
        var before = m.state_dict();
        foreach (var (name, t) in back.state_dict())
            Assert.True(t.equal(before[name]).all().item<bool>(), name);

        var sharded = Path.Combine(_root, "sharded");
        back.SavePretrained(sharded, maxShardBytes: 8_000);
        Assert.True(Directory.GetFiles(sharded, "model-*-of-*.safetensors").Length > 2);
        using var again = CausalLm.FromPretrained(sharded);
        long[] ids = [0, 5, 60, 70, 80];
        Assert.Equal(Logits(m, ids), Logits(again, ids));
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, ModelWeights.SingleFile)), ReSaved(again));
    }

    byte[] ReSaved(CausalLm m)
    {
        var dir = Path.Combine(_root, "resaved");
        m.SavePretrained(dir);
        return File.ReadAllBytes(Path.Combine(dir, ModelWeights.SingleFile));
    }

    [Fact]
    public void LegacyBuffersInACheckpointAreIgnoredButStrayTensorsAreNot()
    {
        var dir = Path.Combine(_root, "legacy");
        using (var m = new CausalLm(GptNeoXForwardTests.Small()))
        {
            m.InitializeWeights(1);
            m.SavePretrained(dir);
        }
        var path = Path.Combine(dir, ModelWeights.SingleFile);
        var tensors = SafeTensors.LoadFile(path);
        tensors["gpt_neox.layers.0.attention.bias"] = ones([1, 1, 4, 4], ScalarType.Bool).tril();
        tensors["gpt_neox.layers.0.attention.masked_bias"] = tensor(-1e9f);
        tensors["gpt_neox.layers.1.attention.rotary_emb.inv_freq"] = ones(2);
        SafeTensors.SaveFile(path, tensors);
        using (CausalLm.FromPretrained(dir)) { }

        tensors["gpt_neox.layers.0.attention.extra.weight"] = zeros(2, 2);
        SafeTensors.SaveFile(path, tensors);
        var e = Assert.Throws<ModelFormatException>(() => CausalLm.FromPretrained(dir));
        Assert.Contains("gpt_neox.layers.0.attention.extra.weight", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PresetFolderHasPythiaTokenizerAndGenerates()
    {
        var dir = Path.Combine(_root, "preset");
        var cfg = ModelPresets.Initialize(dir, "tiny", "gpt-neox", seed: 5);
        Assert.Equal((0.25, 4, true), (cfg.RotaryPct, cfg.RotaryDims, cfg.UseParallelResidual));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        Assert.Equal("GPTNeoXForCausalLM", json["architectures"]![0]!.GetValue<string>());

        var tok = TextTokenizer.Load(dir);
        Assert.Equal(0, tok.BosId);
        Assert.Equal([0], tok.EosIds);
        Assert.False(tok.AddBosToken);
        var ids = tok.Encode("Hello there, how are you?");
        Assert.DoesNotContain(0, ids);
        Assert.Equal("Hello there, how are you?", tok.Decode(ids));
        Assert.Equal([.. ids, 0], tok.Encode("Hello there, how are you?<|endoftext|>"));
        Assert.Equal(tok.Encode("caf\u00e9"), tok.Encode("cafe\u0301")); // NFC normalizer

        using var m = CausalLm.FromPretrained(dir);
        Assert.True(m.Config.IsGptNeoX);
        var (eos, pad) = Training.PolicySetup.SpecialIds(tok, m);
        var outputs = TextGenerator.Generate(m, [[.. ids]], new SamplingOptions { MaxNewTokens = 8, Temperature = 0 }, eos, pad, useCache: true);
        Assert.InRange(outputs[0].TokenIds.Length, 1, 8);
        Assert.All(outputs[0].TokenIds, id => Assert.InRange(id, 0, m.Config.VocabSize - 1));
    }

    [Fact]
    public void LoraOnNeoXModulesStartsAtBaseAndRoundTripsInPeftNames()
    {
        var cfg = GptNeoXForwardTests.Small();
        using var model = new CausalLm(cfg);
        model.InitializeWeights(7);
        model.eval();
        long[] ids = [0, 5, 9, 11, 3, 40, 7, 2];
        var baseLogits = Logits(model);

        var adapterDir = Path.Combine(_root, "adapter");
        float[] adapted;
        using (var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 4, Alpha = 8, TargetModules = [LoraConfig.AllLinear] }, seed: 3))
        {
            Assert.Equal(LoraConfig.GptNeoXTargets, lora.Config.TargetModules);
            Assert.Equal(8, lora.AdaptedModules.Count);
            Assert.Equal(baseLogits, Logits(model)); // B = 0
            var named = lora.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
            Assert.Equal(16, named.Count);
            Assert.Equal([4L, 32L], named["base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight"]);
            Assert.Equal([96L, 4L], named["base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_B.weight"]);
            Assert.Equal([32L, 4L], named["base_model.model.gpt_neox.layers.1.attention.dense.lora_B.weight"]);
            Assert.Equal([4L, 64L], named["base_model.model.gpt_neox.layers.1.mlp.dense_4h_to_h.lora_A.weight"]);
            using (no_grad())
                foreach (var (name, p) in lora.named_parameters().Where(p => p.name.EndsWith(".lora_B.weight", StringComparison.Ordinal)))
                {
                    using var r = randn(p.shape);
                    p.copy_(r * 0.3);
                }
            adapted = Logits(model);
            Assert.True(adapted.Zip(baseLogits).Max(t => Math.Abs(t.First - t.Second)) > 1e-2);
            Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora", StringComparison.Ordinal));
            lora.SaveAdapter(adapterDir);
        }
        Assert.Equal(baseLogits, Logits(model)); // detached

        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, LoraConfig.FileName)))!;
        Assert.Equal(LoraConfig.GptNeoXTargets, saved["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));
        using (var reloaded = LoraAdapters.Attach(model, LoraConfig.Load(adapterDir), seed: 99))
        {
            reloaded.LoadAdapter(adapterDir);
            Assert.Equal(adapted, Logits(model));
        }

        using var some = LoraAdapters.Attach(model, new LoraConfig { Rank = 2, TargetModules = ["query_key_value", "dense_4h_to_h"] }, seed: 1);
        Assert.Equal(["gpt_neox.layers.0.attention.query_key_value", "gpt_neox.layers.0.mlp.dense_4h_to_h",
            "gpt_neox.layers.1.attention.query_key_value", "gpt_neox.layers.1.mlp.dense_4h_to_h"], some.AdaptedModules.Order(StringComparer.Ordinal));
        some.Detach();
        var e = Assert.Throws<ArgumentException>(() => LoraAdapters.Attach(model, new LoraConfig { TargetModules = ["q_proj", "v_proj"] }, seed: 1));
        Assert.Contains("q_proj", e.Message, StringComparison.Ordinal);

        float[] Logits(CausalLm m) => GptNeoXFolderTests.Logits(m, ids);
    }
}
