using RefAlign.Compute.Losses;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>The GRPO family in the single-process trainer: a run resumed from a checkpoint is bitwise the uninterrupted one.</summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class GrpoTrainerTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-grpo-run-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Folder(string name, Action<string> write)
    {
        var dir = Path.Combine(_root, name);
        if (!Directory.Exists(dir)) write(dir);
        return dir;
    }

    RunConfig BertScoreRun(Algorithm algorithm, string output, int steps) => new RunConfig
    {
        Name = "pg", Algorithm = algorithm, Seed = 5, OutputDir = Path.Combine(_root, output),
        Policy = new PolicySection { Model = Folder("policy", d => ModelPresets.Initialize(d, "tiny", "llama", seed: 1)) },
        Data = new DataSection { Path = Path.Combine(Folder("data", DemoData.WriteTo), DemoData.ReferencesFileName), MaxPromptLength = 48, Limit = 40 },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 0 },
        RefAlign = new RefAlignSection
        {
            RewardModel = Folder("encoder", d => EncoderPresets.Initialize(d, "tiny-roberta", seed: 2)), NumSamples = 4, MaxNewTokens = 8, TopK = 50,
        },
        PolicyGradient = new PolicyGradientSection { KlCoef = algorithm == Algorithm.Grpo ? 0.05 : 0, LossAveraging = algorithm == Algorithm.Rloo ? LossAveraging.Sequence : LossAveraging.Token },
        BatchSize = 4, MicroBatchSize = 8, MaxSteps = steps, EvalEvery = 0, CheckpointEvery = 0,
    }.Validate();

    static RunRecorder Run(RunConfig cfg) => RunRecorder.RunLocally(cfg);

    [Theory]
    [InlineData(Algorithm.Grpo)]
    [InlineData(Algorithm.Rloo)]
    [InlineData(Algorithm.ReinforcePp)]
    public void ResumingIsBitwiseTheUninterruptedRun(Algorithm algorithm)
    {
        var straight = BertScoreRun(algorithm, $"straight-{algorithm}", steps: 4);
        var a = Run(straight);
        var interrupted = straight with { OutputDir = Path.Combine(_root, $"interrupted-{algorithm}"), MaxSteps = 2, CheckpointEvery = 2 };
        var b1 = Run(interrupted);
        var b2 = Run(interrupted with { MaxSteps = 4 });
        Assert.Equal(2, b2.Steps[0].Step);
        foreach (var key in new[] { "loss", "grad_norm", "reward/mean" })
            Assert.Equal(a.Steps.Select(s => s.Metrics[key]), b1.Steps.Concat(b2.Steps).Select(s => s.Metrics[key]));
        // The steps did something: the policy moved and the ratio left 1 only by the cached-vs-full forward's rounding.
        Assert.NotEqual(a.Steps[0].Metrics["loss"], a.Steps[^1].Metrics["loss"]);
        Assert.All(a.Steps, s => Assert.InRange(s.Metrics[ClippedPolicyLoss.RatioMean], 1 - 1e-3, 1 + 1e-3));
        Assert.Equal(algorithm == Algorithm.Grpo, a.Steps[^1].Metrics.ContainsKey(ClippedPolicyLoss.Kl));
    }
}
