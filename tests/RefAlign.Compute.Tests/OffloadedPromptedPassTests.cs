using RefAlign.Compute.Formats;
using RefAlign.Compute.Losses;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Sr-*'s prompted pass computed on a separate policy replica at the learner's weight version (what a cluster offloads
/// to a generator silo) gives the learner's own losses and metrics, step after step; a missing or malformed offer makes
/// the learner compute it itself, with the same result.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class OffloadedPromptedPassTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-offload-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    enum Path2 { Learner, Replica, BrokenOffer }

    [Theory]
    [InlineData(Algorithm.SrDpo, false)]
    [InlineData(Algorithm.SrDpo, true)]
    [InlineData(Algorithm.SrIpo, false)]
    public async Task Offloaded_prompted_pass_gives_the_learners_losses(Algorithm algorithm, bool lora)
    {
        var policy = Path.Combine(_root, "policy");
        if (!Directory.Exists(policy)) ModelPresets.Initialize(policy, "tiny", "llama", seed: 1);
        var data = Path.Combine(_root, "data");
        if (!Directory.Exists(data)) DemoData.WriteTo(data);
        var cfg = new RunConfig
        {
            Name = "offload", Algorithm = algorithm, Seed = 3, OutputDir = Path.Combine(_root, "out"),
            Policy = new PolicySection { Model = policy, Lora = lora ? new LoraSection { Rank = 4, Alpha = 8, Dropout = 0.1 } : null },
            Data = new DataSection { Path = Path.Combine(data, DemoData.PreferencesFileName), MaxLength = 96, MaxPromptLength = 48, Limit = 24 },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 2e-3, WarmupSteps = 0 },
            Preference = new PreferenceSection { LogpReduction = algorithm == Algorithm.SrIpo ? Scoring.LogProbReduction.Mean : Scoring.LogProbReduction.Sum },
            BatchSize = 8, MicroBatchSize = 3, MaxSteps = 3, EvalEvery = 0, CheckpointEvery = 0,
        }.Validate();
        var tok = TextTokenizer.Load(policy);
        var d = TrainingData.Load(cfg, tok);

        async Task<List<IReadOnlyDictionary<string, double>>> Steps(Path2 path)
        {
            using var services = new LocalTrainingServices(cfg with { OutputDir = Path.Combine(_root, $"out-{path}-{lora}") }, tok, d);
            var learner = services.Learner;
            // The replica: the model folder plus the learner's trainable tensors of the step's version, as a generator syncs them.
            using var replica = CausalLm.FromPretrained(policy);
            using var adapters = PolicySetup.AttachLora(replica, cfg);
            var (_, pad) = PolicySetup.SpecialIds(tok, replica);
            var targets = PolicySetup.Trainable(replica, adapters).ToDictionary(p => p.Name, p => (Tensor)p.Parameter);
            var metrics = new List<IReadOnlyDictionary<string, double>>();
            for (var step = 0; step < cfg.MaxSteps; step++)
            {
                var pairs = d.BatchIndices(step, cfg.BatchSize, cfg.Seed, cfg.Data.Shuffle).Select(i => d.TrainPairs[i]).ToList();
                var refs = await services.ReferenceAsync(pairs, prompted: true, CancellationToken.None);
                List<PreferenceRow> rows = [.. pairs.Select((p, i) => new PreferenceRow(p, refs[i]))];
                // The two halves, as the learner grain drives them around its wait for the replica's offer.
                var pending = learner.BeginPreferenceStep(step, rows);
                IReadOnlyList<PromptedPolicyLogProbs>? offered = null;
                if (path == Path2.Replica)
                {
                    WeightSnapshot.Capture(learner.TrainableParameters()).ApplyTo(targets);
                    offered = PromptedPass.Compute(replica, pairs, cfg, pad);
                }
                else if (path == Path2.BrokenOffer) offered = step % 2 == 0 ? null : [new PromptedPolicyLogProbs(0, 0)];
                pending.Offered = path != Path2.Learner;
                metrics.Add(learner.FinishPreferenceStep(pending, offered).Metrics);
            }
            return metrics;
        }

        var own = await Steps(Path2.Learner);
        // (Shared vs unshared prefix on the learner: SharedPrefixTests.)
        foreach (var path in new[] { Path2.Replica, Path2.BrokenOffer })
        {
            var other = await Steps(path);
            for (var s = 0; s < own.Count; s++)
            {
                Assert.Equal(own[s].Keys.Order(), other[s].Keys.Where(k => k != Learner.OffloadedMetric).Order());
                var used = other[s].GetValueOrDefault(Learner.OffloadedMetric, double.NaN);
                Assert.Equal(path switch { Path2.Replica => 1.0, Path2.BrokenOffer => 0.0, _ => double.NaN }, used);
                foreach (var (k, v) in own[s])
                    Assert.True(Math.Abs(v - other[s][k]) <= 1e-6 * Math.Max(1, Math.Abs(v)), $"{path} step {s} {k}: {v} vs {other[s][k]}");
            }
        }
        Assert.Contains(PreferenceMetrics.RefineDelta, own[0].Keys);
    }

    [Fact]
    public void Replica_values_equal_the_learners_own_prompted_pass()
    {
        var policy = Path.Combine(_root, "policy-values");
        ModelPresets.Initialize(policy, "tiny", "mistral", seed: 2);
        using var a = CausalLm.FromPretrained(policy);
        using var b = CausalLm.FromPretrained(policy);
        int[] Seq(int n, int salt) => [.. Enumerable.Range(0, n).Select(i => 3 + (i * 7 + salt * 13) % 200)];
        List<PreferencePair> pairs = [.. Enumerable.Range(0, 5).Select(i => new PreferencePair(i, Seq(4 + i, i), Seq(3 + 2 * i, i + 10), Seq(9 - i, i + 20), Seq(12 + i, i + 30)))];
        var cfg = new RunConfig { Algorithm = Algorithm.SrDpo, BatchSize = 5, MicroBatchSize = 2 };
        var shared = PromptedPass.Compute(a, pairs, cfg, padId: 0);
        var again = PromptedPass.Compute(b, pairs, cfg, padId: 0);
        var unshared = PromptedPass.Compute(b, pairs, cfg, padId: 0, sharePrefix: false);
        Assert.Equal(shared, again); // another replica of the same weights: bit for bit
        for (var i = 0; i < pairs.Count; i++)
        {
            Assert.True(Math.Abs(shared[i].Chosen - unshared[i].Chosen) <= 1e-5 * Math.Max(1, Math.Abs(unshared[i].Chosen)), $"pair {i} chosen");
            Assert.True(Math.Abs(shared[i].Rejected - unshared[i].Rejected) <= 1e-5 * Math.Max(1, Math.Abs(unshared[i].Rejected)), $"pair {i} rejected");
        }
    }
}
