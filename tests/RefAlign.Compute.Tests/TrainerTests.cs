using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Tests;

/// <summary>
/// The single-process trainer end to end on generated models and the shipped demo data: learning is real (trends
/// asserted with fixed seeds), resume is bitwise exact, and the reference model runs once per example.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class TrainerTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-train-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Model(string name = "policy")
    {
        var dir = Path.Combine(_root, name);
        if (!Directory.Exists(dir)) ModelPresets.Initialize(dir, "tiny", "llama", seed: 1);
        return dir;
    }

    string Data()
    {
        var dir = Path.Combine(_root, "data");
        if (!Directory.Exists(dir)) DemoData.WriteTo(dir);
        return dir;
    }

    RunConfig Preference(Algorithm algorithm, string output, int steps) => new RunConfig
    {
        Name = "pref", Algorithm = algorithm, Seed = 3, OutputDir = Path.Combine(_root, output),
        Policy = new PolicySection { Model = Model() },
        Data = new DataSection { Path = Path.Combine(Data(), DemoData.PreferencesFileName), MaxLength = 96, MaxPromptLength = 48, EvalFraction = 0.1 },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 2e-3, WarmupSteps = 2 },
        BatchSize = 8, MicroBatchSize = 4, MaxSteps = steps, EvalEvery = steps, EvalExamples = 16, CheckpointEvery = 0,
    }.Validate();

    static (RunRecorder Rec, int Done, LocalTrainingServices Services) Run(RunConfig cfg)
    {
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        var services = new LocalTrainingServices(cfg, tok, data);
        var rec = new RunRecorder();
        var done = new TrainingRun(cfg.Name, cfg, data, services, rec).RunAsync().GetAwaiter().GetResult();
        return (rec, done, services);
    }

    [Theory]
    [InlineData(Algorithm.Dpo)]
    [InlineData(Algorithm.SrDpo)]
    public void PreferenceTrainingRaisesAccuracyWellAboveChance(Algorithm algorithm)
    {
        var (rec, done, services) = Run(Preference(algorithm, $"out-{algorithm}", steps: 24));
        using var _ = services;
        Assert.Equal(24, done);
        var early = rec.Steps.Take(4).Average(s => s.Metrics["rewards/accuracies"]);
        var late = rec.Steps.TakeLast(6).Average(s => s.Metrics["rewards/accuracies"]);
        Assert.True(late >= 0.85, $"late accuracy {late:F2} (early {early:F2})");
        Assert.True(rec.Steps.TakeLast(6).Average(s => s.Metrics["loss"]) < rec.Steps.Take(4).Average(s => s.Metrics["loss"]));
        Assert.True(rec.Steps.TakeLast(6).Average(s => s.Metrics["rewards/margins"]) > 0.5);
        if (algorithm == Algorithm.SrDpo)
        {
            Assert.Contains("refine/delta", rec.Steps[^1].Metrics.Keys);
            Assert.Contains("rewards/prompted_accuracies", rec.Steps[^1].Metrics.Keys);
        }
        Assert.Contains("eval/rewards/accuracies", rec.Evals[^1].Keys);
    }

    [Fact]
    public void ReferenceModelRunsOncePerExample()
    {
        // 2 epochs over a small train set: the second epoch must be served from the cache.
        var cfg = Preference(Algorithm.SrDpo, "out-cache", steps: 1) with { MaxSteps = null, Epochs = 2, EvalEvery = 0, Data = new DataSection { Path = Path.Combine(Data(), DemoData.PreferencesFileName), MaxLength = 96, MaxPromptLength = 48, EvalFraction = 0.1, Limit = 40 } };
        var (rec, done, services) = Run(cfg);
        using var _ = services;
        var cache = services.ReferenceCache!;
        var data = TrainingData.Load(cfg, TextTokenizer.Load(cfg.Policy.Model));
        var seen = Enumerable.Range(0, done).SelectMany(s => data.BatchIndices(s, cfg.BatchSize, cfg.Seed, true)).ToList();
        // Every distinct pair seen is computed once (4 sequences: plain and prompted × chosen/rejected); repeats are hits.
        Assert.Equal(2 * (36 / 8), done);
        Assert.Equal(4 * seen.Distinct().Count(), cache.Misses);
        Assert.Equal(4 * (seen.Count - seen.Distinct().Count()), cache.Hits);
        Assert.Equal(cache.Misses, cache.Count);
    }

    [Fact]
    public void ResumingGivesBitwiseTheSameLossesAsAnUninterruptedRun()
    {
        var straight = Preference(Algorithm.SrDpo, "straight", steps: 6) with { EvalEvery = 0 };
        var (a, _, sa) = Run(straight);
        sa.Dispose();

        var interrupted = straight with { OutputDir = Path.Combine(_root, "interrupted"), MaxSteps = 3, CheckpointEvery = 3 };
        var (b1, _, sb1) = Run(interrupted);
        sb1.Dispose();
        var (b2, done, sb2) = Run(interrupted with { MaxSteps = 6 });
        sb2.Dispose();
        Assert.Equal(6, done);
        var resumed = b1.Steps.Concat(b2.Steps).Select(s => s.Metrics["loss"]).ToArray();
        Assert.Equal(a.Steps.Select(s => s.Metrics["loss"]).ToArray(), resumed);
        Assert.Equal(3, b2.Steps[0].Step);
    }

    [Fact]
    public void RefAlignRaisesTheMeanBertScoreReward()
    {
        var encoder = Path.Combine(_root, "encoder");
        EncoderPresets.Initialize(encoder, "tiny-roberta", seed: 2);
        var cfg = new RunConfig
        {
            Name = "refalign", Algorithm = Algorithm.RefAlign, Seed = 5, OutputDir = Path.Combine(_root, "ra"),
            Policy = new PolicySection { Model = Model() },
            Data = new DataSection { Path = Path.Combine(Data(), DemoData.ReferencesFileName), MaxPromptLength = 48, EvalFraction = 0.1 },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 0 },
            RefAlign = new RefAlignSection { RewardModel = encoder, NumSamples = 4, MaxNewTokens = 12, TopK = 50 },
            BatchSize = 8, MicroBatchSize = 16, MaxSteps = 30, EvalEvery = 0, CheckpointEvery = 0,
        }.Validate();
        var (rec, done, services) = Run(cfg);
        using var _ = services;
        Assert.Equal(30, done);
        var rewards = rec.Steps.Select(s => s.Metrics["reward/mean"]).ToArray();
        var early = rewards.Take(5).Average();
        var late = rewards.TakeLast(5).Average();
        var trace = string.Join(" ", rewards.Select(r => r.ToString("F3")));
        // A random-weight encoder squeezes BERTScore into a narrow band (≈0.67 for unrelated text), so the rise is
        // asserted against the noise: a least-squares slope many standard errors above zero, and a clear net gain.
        Assert.True(late > early + 0.02, $"reward early {early:F3} late {late:F3}: {trace}");
        Assert.True(SlopeTStatistic(rewards) > 4, $"no significant upward trend: {trace}");
        Assert.All(rec.Steps, s => Assert.InRange(s.Metrics["advantage/mean"], -1e-6, 1e-6));
    }

    static double SlopeTStatistic(double[] y)
    {
        var n = y.Length;
        var xm = (n - 1) / 2.0;
        var ym = y.Average();
        var sxx = Enumerable.Range(0, n).Sum(i => (i - xm) * (i - xm));
        var slope = Enumerable.Range(0, n).Sum(i => (i - xm) * (y[i] - ym)) / sxx;
        var residual = Enumerable.Range(0, n).Sum(i => Math.Pow(y[i] - ym - slope * (i - xm), 2)) / (n - 2);
        return slope / Math.Sqrt(residual / sxx);
    }
}
