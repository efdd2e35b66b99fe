using RefAlign.Compute.BertScore;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Scoring;
using RefAlign.Presets;
using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// The device reaches every tensor, proved without a GPU: models loaded onto PyTorch's <c>meta</c> device (shapes, no
/// data) run a forward, a packed forward, a log-prob pass, a LoRA forward and a BERTScore pass with every input there
/// too. A tensor the code created on the CPU instead of the model's device would meet a meta tensor in some op and
/// raise a device-mismatch error (the first test shows that it does). And a GPU this build cannot use fails at once,
/// naming the setting.
/// </summary>
public sealed class DevicePlacementTests : IDisposable
{
    static readonly Device Meta = device("meta");

    readonly string _root = Directory.CreateTempSubdirectory("refalign-device-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static Tensor OnMeta(long[] values, params long[] shape) => tensor(values, shape, device: Meta);

    [Fact]
    public void A_cpu_tensor_meeting_a_meta_model_is_a_device_mismatch()
    {
        using var model = TinyModels.Create();
        model.to(Meta);
        var e = Assert.ThrowsAny<Exception>(() => model.Forward(tensor(new long[] { 1, 5, 7 }, [1, 3])));
        Assert.Contains("device", e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gpt-neox")]
    public void A_model_loaded_onto_the_meta_device_runs_forward_packed_and_log_prob_passes_there(string arch)
    {
        var dir = Path.Combine(_root, arch);
        ModelPresets.Initialize(dir, "tiny", arch, seed: 1);
        using var model = CausalLm.FromPretrained(dir, device: Meta);
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));

        using var _ = no_grad();
        // Left padding, as generation batches: positions and masks are built on the model's device.
        using var logits = model.Forward(OnMeta([0, 0, 4, 9, 11, 3, 8, 6, 5, 7], 2, 5), OnMeta([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 2, 5));
        Assert.Equal(DeviceType.META, logits.device_type);
        Assert.Equal([2L, 5, model.Config.VocabSize], logits.shape);

        var packed = SequenceCollator.Pack([([4, 9], [11, 3]), ([8], [6, 5])], maxLength: 16, padId: 0);
        using var packedLogits = model.ForwardPacked(OnMeta(packed.InputIds, packed.Rows, packed.Length), OnMeta(packed.AttentionMask, packed.Rows, packed.Length));
        Assert.Equal(DeviceType.META, packedLogits.device_type);

        var batch = SequenceCollator.ConcatenatedPreference([[4, 9], [8]], [[11, 3], [6]], [[5], [7, 7]], padId: 0);
        using var lp = SequenceLogProbs.Compute(model, batch);
        Assert.Equal(DeviceType.META, lp.Sum.device_type);
        Assert.Equal([4L], lp.Sum.shape);

        using var cache = model.NewCache(2, 8);
        using var step = model.Forward(OnMeta([4, 9, 8, 6], 2, 2), OnMeta([1, 1, 1, 1], 2, 2), cache, lastOnly: true);
        Assert.Equal(DeviceType.META, step.device_type);
    }

    [Fact]
    public void Lora_adapters_follow_their_model_onto_its_device()
    {
        var dir = Path.Combine(_root, "lora");
        ModelPresets.Initialize(dir, "tiny", "llama", seed: 1);
        using var model = CausalLm.FromPretrained(dir, device: Meta);
        using var lora = LoraAdapters.Attach(model, new LoraConfig { Rank = 4, Alpha = 8 }, seed: 3);
        Assert.All(lora.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        using var logits = model.Forward(OnMeta([4, 9, 11], 1, 3));
        Assert.Equal(DeviceType.META, logits.device_type);
    }

    [Fact]
    public void A_bertscore_pass_on_the_meta_device_reaches_the_score_readout_without_a_device_mismatch()
    {
        var dir = Path.Combine(_root, "encoder");
        EncoderPresets.Initialize(dir, "tiny-roberta", seed: 2);
        using var scorer = BertScorer.FromPretrained(dir, device: Meta);
        // Every tensor op of the pass runs on meta; only reading the scores back to the host fails (a meta tensor has no data).
        var e = Assert.ThrowsAny<Exception>(() => scorer.Score(["a cat sat on the mat"], ["the cat is on the mat"]));
        Assert.True(scorer.EncoderPasses > 0, "the encoder pass did not run");
        Assert.DoesNotContain("same device", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("meta", e.Message, StringComparison.OrdinalIgnoreCase);
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
