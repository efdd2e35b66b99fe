using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Half-precision training with float32 master weights: at the papers' learning rates (5e-7) a bfloat16 update rounds
/// to nothing, so the optimizer steps float32 copies and the model gets them rounded.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class MixedPrecisionTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-mixed-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static bool Same(Tensor a, Tensor b) => a.dtype == b.dtype && a.bytes.SequenceEqual(b.bytes);

    static OptimizerOptions Adam(double lr) => new() { Kind = OptimizerKind.AdamW, LearningRate = lr, WeightDecay = 0, WarmupSteps = 0, TotalSteps = 1000 };

    [Fact]
    public void At_lr_5e7_bfloat16_weights_follow_float32_through_master_weights_where_plain_bfloat16_stays_put()
    {
        manual_seed(11);
        using var init = randn(512);
        using var gradient = randn(512);
        using var p32 = new Parameter(init.clone());
        using var p16 = new Parameter(init.to(ScalarType.BFloat16));
        using var plain = new Parameter(init.to(ScalarType.BFloat16));
        using var fp32 = new PolicyOptimizer([p32], Adam(5e-7));
        using var mixed = new PolicyOptimizer([p16], Adam(5e-7));
        // What the learner did before master weights: AdamW straight on the bfloat16 parameters.
        using var pure = optim.AdamW([plain], 5e-7, weight_decay: 0);
        Assert.False(fp32.HasMasterWeights);
        Assert.True(mixed.HasMasterWeights);

        const int steps = 200;
        for (var i = 0; i < steps; i++)
        {
            p32.grad = gradient.clone(); // zero_grad zeroes the grad in place: never hand over the shared tensor
            p16.grad = gradient.to(ScalarType.BFloat16);
            plain.grad = gradient.to(ScalarType.BFloat16);
            fp32.ClipAndStep();
            mixed.ClipAndStep();
            pure.step();
            pure.zero_grad();
        }

        // float32 moved by about steps·lr per element (Adam's update is ~lr·sign(g) for a constant gradient).
        var moved = (p32 - init).abs().mean().item<float>();
        Assert.InRange(moved, 0.5 * steps * 5e-7, 1.5 * steps * 5e-7);
        // The master weights moved the same way, from the bfloat16-rounded start. Both runs round in float32 at every
        // step (spacing 6e-8 to 1.2e-7 near 1), so they agree to within 5 % of the 1e-4 move, not bitwise.
        var master = mixed.MasterOf(0)!;
        using var masterMove = master - init.to(ScalarType.BFloat16).to(ScalarType.Float32);
        using var fp32Move = p32 - init;
        var apart = (masterMove - fp32Move).abs().max().item<float>();
        Assert.True(apart < 0.05 * steps * 5e-7, $"master weights do not track the float32 run: {apart:E2} apart");
        // The model holds the masters rounded; small weights (fine bfloat16 spacing) changed visibly.
        Assert.True(Same(master.to(ScalarType.BFloat16), p16));
        Assert.True((p16 != init.to(ScalarType.BFloat16)).sum().item<long>() > 10);
        // Plain bfloat16 never moved: every update rounded away.
        Assert.True(Same(plain, init.to(ScalarType.BFloat16)), "plain bfloat16 training moved: the test's premise is wrong");
    }

    [Fact]
    public void Clipping_sees_the_current_half_precision_gradients_however_often_it_is_asked()
    {
        using var p = new Parameter(tensor(new[] { 1f, 2f }).to(ScalarType.BFloat16));
        using var opt = new PolicyOptimizer([p], Adam(1e-3) with { MaxGradNorm = 0 });
        p.grad = tensor(new[] { 3f, 4f }).to(ScalarType.BFloat16);
        Assert.Equal(5.0, opt.ClipGradients(), 6);
        Assert.Equal(5.0, opt.ClipGradients(), 6);
        Assert.Equal(5.0, opt.ClipAndStep(), 6);
        // After the step the gradients are zero, on the parameter and so on its master.
        Assert.Equal(0f, p.grad!.abs().sum().to(ScalarType.Float32).item<float>());
        Assert.Equal(0.0, opt.ClipGradients(), 6);
    }

    [Fact]
    public async Task A_bfloat16_run_checkpoints_its_float32_masters_and_resumes_exactly()
    {
        var model = Path.Combine(_root, "policy");
        ModelPresets.Initialize(model, "tiny", "llama", seed: 1);
        var dataDir = Path.Combine(_root, "data");
        DemoData.WriteTo(dataDir);
        RunConfig Config(string output, int steps) => new RunConfig
        {
            Name = "bf16", Algorithm = Algorithm.Dpo, Seed = 3, OutputDir = Path.Combine(_root, output),
            Policy = new PolicySection { Model = model, Dtype = ModelDType.BFloat16 },
            Data = new DataSection { Path = Path.Combine(dataDir, DemoData.PreferencesFileName), MaxLength = 48, MaxPromptLength = 24 },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 5e-7, WarmupSteps = 0 },
            BatchSize = 4, MicroBatchSize = 4, MaxSteps = steps, EvalEvery = 0, CheckpointEvery = 2,
        }.Validate();
        async Task<string> Train(RunConfig cfg)
        {
            var tok = TextTokenizer.Load(cfg.Policy.Model);
            var data = TrainingData.Load(cfg, tok);
            using var services = new LocalTrainingServices(cfg, tok, data);
            await new TrainingRun(cfg.Name, cfg, data, services).RunAsync();
            return Path.Combine(cfg.OutputDir, "checkpoints", CheckpointStore.FolderName(cfg.MaxSteps!.Value));
        }

        var whole = await Train(Config("whole", 4));
        var twice = Config("twice", 4);
        await Train(twice with { MaxSteps = 2 });
        var resumed = await Train(twice);

        var state = SafeTensors.LoadFile(Path.Combine(whole, "optimizer.safetensors"));
        var masters = state.Where(kv => kv.Key.EndsWith(".master", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(masters);
        Assert.All(masters, kv => Assert.Equal(ScalarType.Float32, kv.Value.dtype));
        // The masters moved off the bfloat16 weights they started from; the saved policy is them, rounded.
        using var start = CausalLm.FromPretrained(model, ScalarType.BFloat16);
        var initial = start.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Contains(masters, kv => !Same(kv.Value, initial[kv.Key[..^".master".Length]].to(ScalarType.Float32)));
        var other = SafeTensors.LoadFile(Path.Combine(resumed, "optimizer.safetensors"));
        Assert.All(masters, kv => Assert.True(Same(kv.Value, other[kv.Key]), $"{kv.Key} differs after a resume"));
    }
}
