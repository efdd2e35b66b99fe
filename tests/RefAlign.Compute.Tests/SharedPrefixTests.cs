using RefAlign.Compute.Models;
using RefAlign.Compute.Scoring;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Sr-*'s prompted pass runs the shared query p ⊕ x once for both completions (KV cache): its log-probs equal the plain
/// concatenated pass's, and so do the learner's losses.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class SharedPrefixTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-prefix-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData("llama")]
    [InlineData("mistral")]
    [InlineData("gpt-neox")]
    public void Shared_prefix_log_probs_equal_the_concatenated_pass(string arch)
    {
        var dir = Path.Combine(_root, arch);
        ModelPresets.Initialize(dir, "tiny", arch, seed: 4);
        using var model = CausalLm.FromPretrained(dir);
        int[] Seq(int n, int salt) => [.. Enumerable.Range(0, n).Select(i => 3 + (i * 7 + salt * 13) % 200)];
        List<int[]> prompts = [Seq(30, 1), Seq(9, 2), Seq(21, 3)];
        List<int[]> chosen = [Seq(5, 4), Seq(17, 5), Seq(1, 6)];
        List<int[]> rejected = [Seq(12, 7), Seq(3, 8), Seq(20, 9)];
        using var _ = no_grad();
        using var plain = SequenceLogProbs.Compute(model, SequenceCollator.ConcatenatedPreference(prompts, chosen, rejected, padId: 0));
        using var shared = SequenceLogProbs.SharedPrefix(model, prompts, chosen, rejected, padId: 0);
        var a = plain.Sum.data<float>().ToArray();
        var b = shared.Sum.data<float>().ToArray();
        for (var i = 0; i < a.Length; i++)
            Assert.True(Math.Abs(a[i] - b[i]) <= 1e-6 * Math.Max(1, Math.Abs(a[i])) * 10, $"{arch} row {i}: {a[i]} vs {b[i]}");
        Assert.Equal(plain.Mean.data<float>().ToArray(), shared.Mean.data<float>().ToArray(), (x, y) => Math.Abs(x - y) <= 1e-5);
    }

    [Fact]
    public async Task Sr_dpo_steps_are_the_same_with_the_prompted_prefix_shared()
    {
        var policy = Path.Combine(_root, "policy");
        ModelPresets.Initialize(policy, "tiny", "llama", seed: 1);
        var data = Path.Combine(_root, "data");
        DemoData.WriteTo(data);
        var cfg = new RunConfig
        {
            Name = "prefix", Algorithm = Algorithm.SrDpo, Seed = 3, OutputDir = Path.Combine(_root, "out"),
            Policy = new PolicySection { Model = policy },
            Data = new DataSection { Path = Path.Combine(data, DemoData.PreferencesFileName), MaxLength = 96, MaxPromptLength = 48, Limit = 24 },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 2e-3, WarmupSteps = 0 },
            BatchSize = 8, MicroBatchSize = 4, MaxSteps = 2, EvalEvery = 0, CheckpointEvery = 0,
        }.Validate();
        var tok = TextTokenizer.Load(policy);
        var d = TrainingData.Load(cfg, tok);
        async Task<List<double>> Losses(bool share)
        {
            using var services = new LocalTrainingServices(cfg with { OutputDir = Path.Combine(_root, $"out-{share}") }, tok, d);
            services.Learner.SharePromptedPrefix = share;
            var rec = new RunRecorder();
            await new TrainingRun(cfg.Name, cfg, d, services, rec).RunAsync();
            return [.. rec.Steps.Select(s => s.Metrics["loss"])];
        }
        var shared = await Losses(true);
        var plain = await Losses(false);
        Assert.Equal(plain, shared, (x, y) => Math.Abs(x - y) <= 1e-6);
    }
}
