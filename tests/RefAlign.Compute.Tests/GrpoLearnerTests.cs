using RefAlign.Compute.Losses;
using RefAlign.Compute.Models;
using RefAlign.Compute.Scoring;
using RefAlign.Compute.Tests.Oracle;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// A learner step of the GRPO family (docs/algorithms.md §7) and of a pipelined run's correction (§8) against a
/// recomputation in double precision from the model files (the oracle decoder), and RefAlign's step in a sync run
/// against RefAlign's loss alone, bit for bit.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class GrpoLearnerTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-grpo-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Model(string name, long seed)
    {
        var dir = Path.Combine(_root, name);
        if (!Directory.Exists(dir)) ModelPresets.Initialize(dir, "tiny", "llama", seed);
        return dir;
    }

    RunConfig Config(Algorithm algorithm, string? reference = null, double kl = 0, LossAveraging averaging = LossAveraging.Token,
        DistributedMode mode = DistributedMode.Sync, double cap = 1.0) => new RunConfig
    {
        Name = "grpo", Algorithm = algorithm, Seed = 3, OutputDir = Path.Combine(_root, "out"),
        Policy = new PolicySection { Model = Model("policy", 1), ReferenceModel = reference },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 0 },
        PolicyGradient = algorithm == Algorithm.RefAlign ? new PolicyGradientSection()
            : new PolicyGradientSection { ClipEpsilon = 0.2, KlCoef = kl, LossAveraging = averaging },
        Distributed = new DistributedSection { Mode = mode, MaxStaleness = 1, ImportanceCap = cap },
        BatchSize = 4, MicroBatchSize = 2, MaxSteps = 1,
    };

    /// <summary>Four rows (prompts of 3–5 tokens, completions of 2–6), behaviour log-probs the oracle's ± noise.</summary>
    static List<RolloutRow> Rows(ReferenceDecoder oracle, int vocab, int seed)
    {
        var rng = new Random(seed);
        int[] Tokens(int n) => [.. Enumerable.Range(0, n).Select(_ => 3 + rng.Next(vocab - 3))];
        var rows = new List<RolloutRow>();
        foreach (var (p, c, a) in new[] { (3, 6, 0.9), (5, 2, -0.4), (4, 5, 1.3), (3, 3, -1.1) })
        {
            var prompt = Tokens(p);
            var completion = Tokens(c);
            var logp = OracleLogProbs(oracle, prompt, completion);
            rows.Add(new RolloutRow(rows.Count, 0, prompt, completion, a, [.. logp.Select(x => (float)(x + (rng.NextDouble() - 0.5) * 0.6))]));
        }
        return rows;
    }

    /// <summary>log softmax(logits[t−1])[id_t] of each completion token, in doubles (§1).</summary>
    static double[] OracleLogProbs(ReferenceDecoder oracle, int[] prompt, int[] completion)
    {
        int[] ids = [.. prompt, .. completion];
        var logits = oracle.Logits(ids);
        var v = logits.GetLength(1);
        var result = new double[completion.Length];
        for (var j = 0; j < completion.Length; j++)
        {
            var t = prompt.Length + j - 1;
            var max = Enumerable.Range(0, v).Max(k => logits[t, k]);
            var lse = max + Math.Log(Enumerable.Range(0, v).Sum(k => Math.Exp(logits[t, k] - max)));
            result[j] = logits[t, completion[j]] - lse;
        }
        return result;
    }

    static ReferenceDecoder Oracle(string folder) => new(CausalLmConfig.Load(folder), ReferenceDecoder.ReadWeights(folder));

    Learner NewLearner(RunConfig config)
    {
        var policy = CausalLm.FromPretrained(config.Policy.Model);
        var (_, pad) = PolicySetup.SpecialIds(TextTokenizer.Load(config.Policy.Model), policy);
        return new Learner(config, policy, pad, totalSteps: 10);
    }

    [Theory]
    [InlineData(LossAveraging.Token, 0.0)]
    [InlineData(LossAveraging.Sequence, 0.1)]
    [InlineData(LossAveraging.Token, 0.5)]
    public void GrpoStepLossEqualsTheDoublePrecisionRecomputation(LossAveraging averaging, double kl)
    {
        var config = Config(Algorithm.Grpo, reference: kl > 0 ? Model("reference", 5) : null, kl: kl, averaging: averaging);
        var oracle = Oracle(config.Policy.Model);
        var reference = kl > 0 ? Oracle(config.Policy.ReferenceModel!) : null;
        using var learner = NewLearner(config);
        var rows = Rows(oracle, learner.Policy.Config.VocabSize, seed: 7);

        double total = rows.Sum(r => r.Completion.Length), loss = 0, clippedTokens = 0;
        foreach (var r in rows)
        {
            var logp = OracleLogProbs(oracle, r.Prompt, r.Completion);
            var refLogp = reference is null ? null : OracleLogProbs(reference, r.Prompt, r.Completion);
            var sum = 0.0;
            for (var j = 0; j < logp.Length; j++)
            {
                var ratio = Math.Exp(logp[j] - r.BehaviourLogProbs![j]);
                var unclipped = ratio * r.Advantage;
                var clipped = Math.Clamp(ratio, 0.8, 1.2) * r.Advantage;
                if (clipped < unclipped) clippedTokens++;
                var term = -Math.Min(unclipped, clipped);
                if (refLogp is not null)
                {
                    var d = refLogp[j] - logp[j];
                    term += kl * (Math.Exp(d) - d - 1);
                }
                sum += term;
            }
            loss += averaging == LossAveraging.Token ? sum / total : sum / logp.Length / rows.Count;
        }

        var result = learner.RefAlignStep(0, rows);
        Assert.True(Math.Abs(loss - result.Metrics["loss"]) < 1e-5, $"oracle {loss:R}, learner {result.Metrics["loss"]:R}");
        Assert.Equal(clippedTokens / total, result.Metrics[ClippedPolicyLoss.ClipFraction], 6);
        Assert.InRange(clippedTokens, 1, total - 1); // the noise put some ratios outside [0.8, 1.2], not all
        Assert.Equal(kl > 0, result.Metrics.ContainsKey(ClippedPolicyLoss.Kl));
        Assert.Equal(1, learner.WeightVersion);
    }

    [Theory]
    [InlineData(Algorithm.RefAlign)]
    [InlineData(Algorithm.Grpo)]
    public void PipelinedStepWeighsEachTokenByTheTruncatedImportanceRatio(Algorithm algorithm)
    {
        var config = Config(algorithm, mode: DistributedMode.Pipelined, cap: 1.0);
        Assert.True(config.CorrectsOffPolicy);
        var oracle = Oracle(config.Policy.Model);
        using var learner = NewLearner(config);
        var rows = Rows(oracle, learner.Policy.Config.VocabSize, seed: 11);

        // RefAlign: −Σ w·A·ℓ / Σm. GRPO: the ratio to the learner's own (detached) policy is 1, so −Σ w·A / Σm.
        double total = rows.Sum(r => r.Completion.Length), loss = 0, weights = 0, capped = 0;
        foreach (var r in rows)
        {
            var logp = OracleLogProbs(oracle, r.Prompt, r.Completion);
            for (var j = 0; j < logp.Length; j++)
            {
                var raw = Math.Exp(logp[j] - r.BehaviourLogProbs![j]);
                var w = Math.Min(raw, 1.0);
                if (raw > 1.0) capped++;
                weights += w;
                loss += -w * r.Advantage * (algorithm == Algorithm.RefAlign ? logp[j] : 1.0) / total;
            }
        }
        var result = learner.RefAlignStep(0, rows);
        Assert.True(Math.Abs(loss - result.Metrics["loss"]) < 1e-5, $"oracle {loss:R}, learner {result.Metrics["loss"]:R}");
        Assert.Equal(weights / total, result.Metrics[TruncatedImportance.WeightMean], 5);
        Assert.Equal(capped / total, result.Metrics[TruncatedImportance.ClipFraction], 6);
        Assert.InRange(capped, 1, total - 1);
    }

    [Fact]
    public void SyncRefAlignStepIsBitwiseRefAlignsLossAlone()
    {
        // Staleness 0 (sync): no weights enter, so the step is exactly RefAlign's loss of §3, micro-batch by micro-batch.
        var config = Config(Algorithm.RefAlign);
        Assert.False(config.CorrectsOffPolicy);
        var oracle = Oracle(config.Policy.Model);
        using var learner = NewLearner(config);
        using var twin = NewLearner(config);
        var rows = Rows(oracle, learner.Policy.Config.VocabSize, seed: 13);
        var result = learner.RefAlignStep(0, rows);
        var (_, pad) = PolicySetup.SpecialIds(TextTokenizer.Load(config.Policy.Model), twin.Policy);

        // The loop as it was before the GRPO family and the correction existed.
        var totalTokens = rows.Sum(r => r.Completion.Length);
        double loss = 0;
        twin.Policy.train();
        foreach (var (start, count, _) in MicroBatches.Split(rows.Count, config.MicroBatchSize))
        {
            using var scope = NewDisposeScope();
            var mb = rows.Skip(start).Take(count).ToList();
            var batch = SequenceCollator.Collate([.. mb.Select(r => (r.Prompt, r.Completion))], pad, PaddingSide.Right);
            var ids = tensor(batch.InputIds, [batch.Rows, batch.Length]);
            var logits = twin.Policy.Forward(ids, tensor(batch.AttentionMask, [batch.Rows, batch.Length])).to(ScalarType.Float32);
            var lp = SequenceLogProbs.FromLogits(logits, ids, tensor(batch.CompletionMask, [batch.Rows, batch.Length]));
            using var pg = RefAlignPolicyGradientLoss.Compute(lp.PerToken, lp.CompletionMask, tensor(mb.Select(r => (float)r.Advantage).ToArray()),
                RefAlignPolicyGradientLoss.TokenEntropies(logits));
            var share = mb.Sum(r => r.Completion.Length) / (double)totalTokens;
            (pg.Loss * share).backward();
            loss += pg.Metrics["loss"] * share;
        }
        Assert.Equal(loss, result.Metrics["loss"]); // bitwise
        // The twin holds the gradients the learner stepped with.
        var norm = Math.Sqrt(twin.TrainableParameters().Sum(p => p.Tensor.grad!.to(ScalarType.Float64).pow(2).sum().item<double>()));
        Assert.True(Math.Abs(norm - result.Metrics["grad_norm"]) <= 1e-6 * norm, $"grad_norm {result.Metrics["grad_norm"]:R}, twin {norm:R}");
        Assert.False(result.Metrics.ContainsKey(TruncatedImportance.WeightMean));
    }
}
