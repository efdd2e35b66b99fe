using RefAlign.Compute.Data;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// The device reaches every tensor, proved without a GPU. The models and inputs live on the CPU while the default
/// device of new tensors is PyTorch's <c>meta</c> (shapes, no data): a tensor the code creates without naming the
/// model's device lands on meta, and the first op that mixes it with the model's tensors, or reads it, fails. Whole
/// runs (generation with a KV cache, BERTScore, reward shaping, the learner's steps with LoRA, clipping and the
/// optimizer, evaluation, checkpoints, SFT packing) pass under it. (Models cannot live on meta here: the C++ libtorch
/// lacks meta kernels for embedding lookups.) And a GPU this build cannot use fails at once, naming the setting.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))] // the default device is process-wide: nothing runs beside these tests
public sealed class DevicePlacementTests : IDisposable
{
    static readonly Device Meta = device("meta");

    readonly string _root = Directory.CreateTempSubdirectory("refalign-device-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>Runs <paramref name="work"/> with new tensors defaulting to the meta device.</summary>
    static T UnderMetaDefault<T>(Func<T> work)
    {
        var previous = get_default_device();
        set_default_device(Meta);
        try { return work(); }
        finally { set_default_device(previous); }
    }

    [Fact]
    public void A_tensor_created_without_the_models_device_fails_under_the_meta_default()
    {
        using var model = TinyModels.Create();
        var e = Assert.ThrowsAny<Exception>(() => UnderMetaDefault(() => model.Forward(tensor(new long[] { 1, 5, 7 }, [1, 3]))));
        Assert.Contains("meta", e.Message, StringComparison.OrdinalIgnoreCase);
        // The same call with the input on the model's device computes.
        using var logits = UnderMetaDefault(() => model.Forward(tensor(new long[] { 1, 5, 7 }, [1, 3], device: model.Device)));
        Assert.Equal(DeviceType.CPU, logits.device_type);
    }

    string Data()
    {
        var dir = Path.Combine(_root, "data");
        if (!Directory.Exists(dir)) DemoData.WriteTo(dir);
        return dir;
    }

    RunConfig Config(string arch, Algorithm algorithm)
    {
        var model = Path.Combine(_root, arch);
        if (!Directory.Exists(model)) ModelPresets.Initialize(model, "tiny", arch, seed: 1);
        var encoder = Path.Combine(_root, "encoder");
        if (!Directory.Exists(encoder)) EncoderPresets.Initialize(encoder, "tiny-roberta", seed: 2);
        var refalign = algorithm == Algorithm.RefAlign;
        return new RunConfig
        {
            Name = "device", Algorithm = algorithm, Seed = 2, OutputDir = Path.Combine(_root, $"out-{arch}-{algorithm}"),
            Policy = new PolicySection { Model = model, Lora = algorithm == Algorithm.SrDpo ? new LoraSection { Rank = 4, Alpha = 8, Dropout = 0.1 } : null },
            Data = new DataSection
            {
                Path = Path.Combine(Data(), refalign ? DemoData.ReferencesFileName : DemoData.PreferencesFileName),
                MaxLength = 96, MaxPromptLength = 48, EvalFraction = 0.1, Limit = 40, Packing = algorithm == Algorithm.Sft,
            },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-3, WarmupSteps = 1, MaxGradNorm = 1 },
            RefAlign = new RefAlignSection { RewardModel = encoder, NumSamples = 2, MaxNewTokens = 6, TopK = 20, TopP = 0.9, Confidence = true },
            BatchSize = 4, MicroBatchSize = 2, MaxSteps = 2, EvalEvery = 2, EvalExamples = 4, CheckpointEvery = 1,
        }.Validate();
    }

    [Theory]
    [InlineData("llama", Algorithm.RefAlign)]
    [InlineData("qwen2", Algorithm.SrDpo)]
    [InlineData("gpt-neox", Algorithm.Sft)]
    [InlineData("mistral", Algorithm.Ipo)]
    public async Task A_whole_run_creates_every_tensor_on_its_models_device(string arch, Algorithm algorithm)
    {
        var config = Config(arch, algorithm);
        var tok = TextTokenizer.Load(config.Policy.Model);
        var data = TrainingData.Load(config, tok);
        using var services = new LocalTrainingServices(config, tok, data, CPU);
        var rec = new RunRecorder();
        var previous = get_default_device();
        set_default_device(Meta);
        try { await new TrainingRun(config.Name, config, data, services, rec).RunAsync(); }
        finally { set_default_device(previous); }
        Assert.Equal(2, rec.Steps.Count);
        Assert.All(rec.Steps, s => Assert.True(double.IsFinite(s.Metrics["loss"])));
        Assert.NotEmpty(rec.Evals[^1]);
        Assert.Equal(2, rec.Checkpoints.Count);
        Assert.All(services.Learner.Policy.parameters(), p => Assert.Equal(DeviceType.CPU, p.device_type));
    }

    [Theory]
    [InlineData("cuda", "CPU build")]
    [InlineData("cuda:3", "CPU build")]
    [InlineData("gpu", "not a device")]
    public void A_device_this_build_cannot_use_fails_naming_the_setting(string name, string why)
    {
        if (cuda.is_available() && name.StartsWith("cuda", StringComparison.Ordinal))
        {
            // A CUDA build: a device past the machine's count is what fails, saying how many there are.
            var past = Assert.Throws<DeviceUnavailableException>(() => ComputeDevices.Resolve("cuda:99", "Silo:Device"));
            Assert.Contains("CUDA device(s)", past.Message);
            return;
        }
        var e = Assert.Throws<DeviceUnavailableException>(() => ComputeDevices.Resolve(name, "Silo:Device"));
        Assert.Equal("Silo:Device", e.Setting);
        Assert.StartsWith($"Silo:Device is '{name}'", e.Message);
        Assert.Contains(why, e.Message);
        if (!cuda.is_available()) Assert.Equal("cpu", ComputeDevices.Build);
        Assert.Equal(DeviceType.CPU, ComputeDevices.Resolve("cpu", "--device").type);
        Assert.Equal("cuda:0", ComputeDevices.Canonical("CUDA", "--device"));
    }
}
