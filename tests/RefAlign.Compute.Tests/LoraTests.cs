using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>LoRA on the Llama-family decoder: exact base at init, adapter-only gradients, PEFT-compatible files.</summary>
public sealed class LoraTests : IDisposable
{
    static readonly long[] Ids = [1, 5, 9, 11, 3, 40, 7, 2, 1, 20, 21, 22, 23, 24, 25, 26];
    readonly string _root = Directory.CreateTempSubdirectory("refalign-lora-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static float[] Logits(CausalLm m)
    {
        using var _ = no_grad();
        using var ids = tensor(Ids, [2, Ids.Length / 2]);
        using var l = m.Forward(ids);
        return l.data<float>().ToArray();
    }

    static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (var i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    /// <summary>Gives every lora_B random values so the adapters change the function (B = 0 at init).</summary>
    internal static void RandomizeB(LoraAdapters lora, long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in lora.named_parameters())
            if (name.EndsWith(".lora_B.weight", StringComparison.Ordinal))
            {
                using var r = randn(p.shape, ScalarType.Float32, generator: gen);
                p.copy_(r * 0.3);
            }
    }

    static Dictionary<string, IntPtr> Handles(CausalLm m) =>
        m.named_parameters().ToDictionary(p => p.name, p => p.parameter.Handle);

    [Fact]
    public void AtInitEqualsBaseExactly_TrainedDiffers_DisableComputesBaseWithSameWeights()
    {
        using var model = TinyModels.Create();
        var baseLogits = Logits(model);
        var handles = Handles(model);
        var stateKeys = model.state_dict().Keys.Order(StringComparer.Ordinal).ToList();

        using var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 4 }, seed: 3);
        Assert.Equal(baseLogits, Logits(model));

        // PEFT names and shapes: A [r, in], B [out, r]; 7 projections × 2 layers × 2 matrices.
        var named = lora.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal(28, named.Count);
        Assert.Equal([4L, 32L], named["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]);
        Assert.Equal([32L, 4L], named["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]);
        Assert.Equal([16L, 4L], named["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]);
        Assert.Equal([4L, 64L], named["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"]);
        Assert.Equal([64L, 4L], named["base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"]);
        // A is kaiming-uniform(a=√5): non-zero and within ±1/√in.
        var a = lora.named_parameters().First(p => p.name.EndsWith("q_proj.lora_A.weight", StringComparison.Ordinal)).parameter;
        Assert.InRange(a.abs().max().item<float>(), 1e-3, 1 / Math.Sqrt(32) + 1e-6);

        RandomizeB(lora, 11);
        var adapted = Logits(model);
        Assert.True(MaxAbsDiff(baseLogits, adapted) > 1e-2, "random B must change the logits");

        using (lora.Disable())
        {
            Assert.Equal(baseLogits, Logits(model));
            var inner = lora.Disable();
            Assert.Equal(baseLogits, Logits(model));
            inner.Dispose();
            inner.Dispose(); // a second dispose must not re-enable the outer scope's adapters
            Assert.Equal(baseLogits, Logits(model));
        }
        Assert.Equal(adapted, Logits(model));

        // The reference is the base weights themselves: same parameters, same native tensors, nothing added.
        Assert.Equal(handles, Handles(model));
        Assert.Equal(stateKeys, model.state_dict().Keys.Order(StringComparer.Ordinal).ToList());
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora", StringComparison.Ordinal));
    }

    [Fact]
    public void OnlyAdapterParametersReceiveGradients()
    {
        using var model = TinyModels.Create();
        using var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 2, Alpha = 4 }, seed: 1);
        RandomizeB(lora, 5); // with B = 0 the gradient of A is exactly zero
        model.train();
        using (var ids = tensor(Ids, [2, Ids.Length / 2]))
        using (var logits = model.Forward(ids))
        using (var targets = ids.roll(-1, 1))
        using (var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1)))
            loss.backward();
        model.eval();

        foreach (var (name, p) in model.named_parameters())
        {
            Assert.False(p.requires_grad, name);
            var g = p.grad;
            Assert.True(g is null || g.abs().sum().item<float>() == 0, $"base parameter {name} got a gradient");
        }
        Assert.Equal(lora.parameters().Count(), lora.TrainableParameters().Count());
        foreach (var (name, p) in lora.named_parameters())
        {
            Assert.True(p.requires_grad, name);
            Assert.NotNull(p.grad);
            Assert.True(p.grad!.abs().sum().item<float>() > 0, $"adapter parameter {name} got no gradient");
        }

        lora.Detach();
        Assert.All(model.named_parameters(), p => Assert.True(p.parameter.requires_grad, p.name));
    }

    [Fact]
    public void DropoutAppliesOnlyInTrainingMode()
    {
        using var model = TinyModels.Create();
        using var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 4, Dropout = 0.5 }, seed: 1);
        RandomizeB(lora, 2);
        Assert.Equal(Logits(model), Logits(model));
        model.train();
        Assert.True(MaxAbsDiff(Logits(model), Logits(model)) > 1e-4, "dropout must act in training mode");
        using (lora.Disable()) Assert.Equal(Logits(model), Logits(model)); // and only on the adapter path
        model.eval();
        Assert.Equal(Logits(model), Logits(model));
    }

    [Fact]
    public void MergeAndSaveLoadsBackWithAdaptedLogits()
    {
        using var model = TinyModels.Create();
        var baseLogits = Logits(model);
        using var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 4, Alpha = 8 }, seed: 3);
        RandomizeB(lora, 4);
        var adapted = Logits(model);
        var dir = Path.Combine(_root, "merged");

        lora.MergeAndSave(model, dir);

        Assert.True(File.Exists(Path.Combine(dir, "config.json")));
        Assert.True(File.Exists(Path.Combine(dir, "generation_config.json")));
        using var merged = CausalLm.FromPretrained(dir);
        var m = Logits(merged);
        Assert.True(MaxAbsDiff(adapted, m) <= 1e-5, $"merged logits differ by {MaxAbsDiff(adapted, m)}");
        Assert.True(MaxAbsDiff(baseLogits, m) > 1e-2);
        // The in-memory base is untouched.
        using (lora.Disable()) Assert.Equal(baseLogits, Logits(model));
        Assert.Equal(adapted, Logits(model));

        using var other = TinyModels.Create();
        Assert.Throws<ArgumentException>(() => lora.MergeAndSave(other, Path.Combine(_root, "x")));
    }

    [Fact]
    public void AdapterSaveLoadRoundTripGivesIdenticalLogitsAndPeftFiles()
    {
        var dir = Path.Combine(_root, "adapter");
        float[] adapted;
        using (var model = TinyModels.Create())
        using (var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 4, Alpha = 32, Dropout = 0.05, BaseModelNameOrPath = "tiny" }, seed: 3))
        {
            RandomizeB(lora, 6);
            adapted = Logits(model);
            lora.SaveAdapter(dir);
        }

        var header = SafeTensors.ReadHeader(Path.Combine(dir, LoraAdapters.WeightsFile), out _);
        Assert.Equal(28, header.Count);
        Assert.Equal([32L, 4L], header["base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight"].Shape);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
        Assert.Equal("LORA", cfg["peft_type"]!.GetValue<string>());
        Assert.Equal("CAUSAL_LM", cfg["task_type"]!.GetValue<string>());
        Assert.Equal("none", cfg["bias"]!.GetValue<string>());
        Assert.Equal("tiny", cfg["base_model_name_or_path"]!.GetValue<string>());
        Assert.Equal(4, cfg["r"]!.GetValue<int>());
        Assert.Equal(32, cfg["lora_alpha"]!.GetValue<double>());
        Assert.Equal(0.05, cfg["lora_dropout"]!.GetValue<double>());
        Assert.Equal(LoraConfig.LlamaTargets, cfg["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()));

        // Same base, different A draw and alpha: loading restores the saved adapter exactly (alpha from the file).
        using var model2 = TinyModels.Create();
        using var lora2 = LoraAdapters.Attach(model2, new LoraConfig { Rank = 4, Alpha = 16 }, seed: 99);
        Assert.NotEqual(adapted, Logits(model2));
        lora2.LoadAdapter(dir);
        Assert.Equal(32, lora2.Config.Alpha);
        Assert.Equal(adapted, Logits(model2));
    }

    [Fact]
    public void BaseModelFolderSavesAndLoadsWhileAdaptersAreAttached()
    {
        using var model = TinyModels.Create();
        var baseLogits = Logits(model);
        using var fresh = new CausalLm(model.Config);
        using var lora = LoraAdapters.Attach(model, new LoraConfig(), seed: 3);
        RandomizeB(lora, 8);
        Assert.Equal(
            fresh.state_dict().Keys.Order(StringComparer.Ordinal),
            model.state_dict().Keys.Order(StringComparer.Ordinal));

        var dir = Path.Combine(_root, "base");
        model.SavePretrained(dir);
        Assert.DoesNotContain(SafeTensors.ReadHeader(Path.Combine(dir, ModelWeights.SingleFile), out _).Keys,
            k => k.Contains("lora", StringComparison.Ordinal));
        using var reloaded = CausalLm.FromPretrained(dir);
        Assert.Equal(baseLogits, Logits(reloaded));

        // Loading an HF folder into the adapted model also still works, and the adapters stay attached.
        var adapted = Logits(model);
        Assert.Empty(ModelWeights.LoadInto(model, dir));
        Assert.Equal(adapted, Logits(model));
    }

    [Fact]
    public void DetachRemovesHooksAndAllowsReattaching()
    {
        using var model = TinyModels.Create();
        var baseLogits = Logits(model);
        var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 2, TargetModules = ["q_proj", "v_proj"] }, seed: 3);
        Assert.Equal(8, lora.parameters().Count());
        Assert.Equal(4, lora.AdaptedModules.Count);
        RandomizeB(lora, 1);
        Assert.NotEqual(baseLogits, Logits(model));
        Assert.Throws<InvalidOperationException>(() => LoraAdapters.Attach(model, new LoraConfig { TargetModules = ["v_proj"] }, seed: 1));
        lora.Detach();
        Assert.Equal(baseLogits, Logits(model));
        lora.Dispose();
        using var again = LoraAdapters.Attach(model, new LoraConfig(), seed: 1);
        Assert.Equal(baseLogits, Logits(model));
    }

    [Theory]
    [InlineData("Rank")]
    [InlineData("Alpha")]
    [InlineData("Dropout")]
    [InlineData("TargetModules")]
    public void ConfigValidationNamesTheField(string field)
    {
        var bad = field switch
        {
            "Rank" => new LoraConfig { Rank = 0 },
            "Alpha" => new LoraConfig { Alpha = 0 },
            "Dropout" => new LoraConfig { Dropout = 1 },
            _ => new LoraConfig { TargetModules = ["q_proj", "qkv_proj"] },
        };
        var e = Assert.Throws<ArgumentException>(bad.Validate);
        Assert.Equal(field, e.ParamName);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
        using var model = TinyModels.Create();
        var e2 = Assert.Throws<ArgumentException>(() => LoraAdapters.Attach(model, bad, seed: 1));
        Assert.Equal(field, e2.ParamName);
        Assert.All(model.named_parameters(), p => Assert.True(p.parameter.requires_grad));
        new LoraConfig().Validate();
    }

    [Fact]
    public void PeftConfigLoadsAndUnsupportedOptionsAreRejected()
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root, "cfg")).FullName;
        var path = Path.Combine(dir, LoraConfig.FileName);
        File.WriteAllText(path, """
            {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "lora_dropout": 0.1,
             "target_modules": ["v_proj", "q_proj"], "bias": "none", "use_dora": false, "use_rslora": false,
             "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": null, "modules_to_save": null,
             "base_model_name_or_path": "meta-llama/Llama-3.2-1B"}
            """);
        var c = LoraConfig.Load(dir);
        Assert.Equal(16, c.Rank);
        Assert.Equal(32, c.Alpha);
        Assert.Equal(0.1, c.Dropout);
        Assert.Equal(2.0, c.Scale);
        Assert.Equal(["q_proj", "v_proj"], c.TargetModules);
        Assert.Equal("meta-llama/Llama-3.2-1B", c.BaseModelNameOrPath);

        c.Save(dir);
        var back = LoraConfig.Load(dir);
        Assert.Equal((c.Rank, c.Alpha, c.Dropout, c.BaseModelNameOrPath), (back.Rank, back.Alpha, back.Dropout, back.BaseModelNameOrPath));
        Assert.Equal(c.TargetModules, back.TargetModules);

        File.WriteAllText(path, """{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "use_dora": true}""");
        Assert.Contains("'use_dora'", Assert.Throws<ModelFormatException>(() => LoraConfig.Load(dir)).Message, StringComparison.Ordinal);
        File.WriteAllText(path, """{"peft_type": "LORA", "r": 0, "lora_alpha": 16, "target_modules": ["q_proj"]}""");
        var e = Assert.Throws<ModelFormatException>(() => LoraConfig.Load(dir));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("Rank", e.Message, StringComparison.Ordinal);
        File.WriteAllText(path, """{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": "all-linear"}""");
        Assert.Equal(LoraConfig.KnownTargets, LoraConfig.Load(dir).TargetModules);
    }

    [Fact]
    public void LoadingMismatchedAdapterNamesFileAndTensorAndChangesNothing()
    {
        var dir = Path.Combine(_root, "r4");
        using (var m = TinyModels.Create())
        using (var l = LoraAdapters.Attach(m, new LoraConfig { Rank = 4 }, seed: 1))
        {
            RandomizeB(l, 3);
            l.SaveAdapter(dir);
        }
        var file = Path.Combine(dir, LoraAdapters.WeightsFile);

        using var model = TinyModels.Create();
        var baseLogits = Logits(model);
        using var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 8 }, seed: 1);
        var e = Assert.Throws<ModelFormatException>(() => lora.LoadAdapter(dir));
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.Contains("'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'", e.Message, StringComparison.Ordinal);
        Assert.Contains("[4, 32]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[8, 32]", e.Message, StringComparison.Ordinal);
        Assert.Equal(baseLogits, Logits(model)); // B still zero: nothing was copied

        using var model2 = TinyModels.Create();
        using var fewer = LoraAdapters.Attach(model2, new LoraConfig { Rank = 4, TargetModules = ["q_proj", "v_proj"] }, seed: 1);
        var e2 = Assert.Throws<ModelFormatException>(() => fewer.LoadAdapter(dir));
        Assert.Contains(file, e2.Message, StringComparison.Ordinal);
        Assert.Contains("'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight'", e2.Message, StringComparison.Ordinal);

        var e3 = Assert.Throws<ModelFormatException>(() => fewer.LoadAdapter(Path.Combine(_root, "missing")));
        Assert.Contains(LoraAdapters.WeightsFile, e3.Message, StringComparison.Ordinal);
    }
}
