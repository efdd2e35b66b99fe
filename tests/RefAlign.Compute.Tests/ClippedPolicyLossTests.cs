using RefAlign.Compute.Losses;
using RefAlign.Compute.Rewards;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// The GRPO family's loss (docs/algorithms.md §7) and the truncated importance weights (§8) against a plain double
/// loop written from the equations, and the advantage estimators against hand-computed values.
/// </summary>
public sealed class ClippedPolicyLossTests
{
    const int B = 3, T = 6;

    sealed record Batch(double[] Logp, double[] Old, double[] Ref, double[] Weights, double[] Mask, double[] Adv);

    static Batch RandomBatch(int seed)
    {
        var rng = new Random(seed);
        double[] Draw(double lo, double hi) => [.. Enumerable.Range(0, B * T).Select(_ => lo + (hi - lo) * rng.NextDouble())];
        var logp = Draw(-4, -0.1);
        // Old log-probs near the new ones, some far enough that the ratio leaves [0.8, 1.2] both ways.
        var old = logp.Select(x => x + (rng.NextDouble() - 0.5) * 0.8).ToArray();
        // Rows of 4, 2 and 5 completion tokens after prompts of 1, 2 and 1 tokens; the rest is junk that must not count.
        var mask = new double[B * T];
        foreach (var (b, from, n) in new[] { (0, 1, 4), (1, 2, 2), (2, 1, 5) })
            for (var t = from; t < from + n; t++) mask[b * T + t] = 1;
        return new Batch(logp, old, Draw(-4, -0.1), Draw(0.2, 1.0), mask, [0.7, -1.3, 0.25]);
    }

    /// <summary>Each sequence's share of the loss, straight from the equations, in doubles.</summary>
    static double[] Oracle(Batch x, ClippedPolicyLossOptions o, bool kl, bool weighted)
    {
        var perRow = new double[B];
        var lengths = new double[B];
        for (var b = 0; b < B; b++)
            for (var t = 0; t < T; t++)
            {
                var i = b * T + t;
                if (x.Mask[i] == 0) continue;
                lengths[b]++;
                var r = Math.Exp(x.Logp[i] - x.Old[i]);
                var surrogate = Math.Min(r * x.Adv[b], Math.Clamp(r, 1 - o.ClipEpsilon, 1 + o.ClipEpsilon) * x.Adv[b]);
                var term = -surrogate * (weighted ? x.Weights[i] : 1);
                if (kl)
                {
                    var d = x.Ref[i] - x.Logp[i];
                    term += o.KlCoef * (Math.Exp(d) - d - 1);
                }
                perRow[b] += term;
            }
        var total = lengths.Sum();
        return [.. perRow.Select((s, b) => o.Averaging == LossAveraging.Token ? s / total : s / lengths[b] / B)];
    }

    static Tensor T2(double[] v, bool grad = false) => tensor(v, [B, T], ScalarType.Float64, requires_grad: grad);

    [Theory]
    [InlineData(LossAveraging.Token, 0.0, false)]
    [InlineData(LossAveraging.Sequence, 0.0, false)]
    [InlineData(LossAveraging.Token, 0.05, false)]
    [InlineData(LossAveraging.Sequence, 0.05, true)]
    [InlineData(LossAveraging.Token, 0.3, true)]
    public void PerSampleLossesEqualTheEquationsInDoublePrecision(LossAveraging averaging, double beta, bool weighted)
    {
        var x = RandomBatch(11);
        var o = new ClippedPolicyLossOptions { ClipEpsilon = 0.2, KlCoef = beta, Averaging = averaging };
        using var logp = T2(x.Logp, grad: true);
        using var r = ClippedPolicyLoss.Compute(logp, T2(x.Mask), tensor(x.Adv, ScalarType.Float64), T2(x.Old), o,
            beta > 0 ? T2(x.Ref) : null, weighted ? T2(x.Weights) : null);
        var expected = Oracle(x, o, beta > 0, weighted);
        for (var b = 0; b < B; b++)
            Assert.True(Math.Abs(expected[b] - r.PerSample[b]) < 1e-12, $"row {b}: expected {expected[b]:R}, got {r.PerSample[b]:R}");
        Assert.Equal(expected.Sum(), r.Loss.item<double>(), 12);
        Assert.Equal(expected.Sum(), r.Metrics["loss"], 12);
        // Some ratios were clipped (else ε would not be under test) and some were not.
        Assert.InRange(r.Metrics[ClippedPolicyLoss.ClipFraction], 0.05, 0.95);
    }

    [Fact]
    public void ClippedTokensGetNoGradientAndTheRestGetMinusWeightTimesRatioTimesAdvantage()
    {
        var x = RandomBatch(5);
        var o = new ClippedPolicyLossOptions { ClipEpsilon = 0.2, Averaging = LossAveraging.Token };
        using var logp = T2(x.Logp, grad: true);
        using var r = ClippedPolicyLoss.Compute(logp, T2(x.Mask), tensor(x.Adv, ScalarType.Float64), T2(x.Old), o, null, T2(x.Weights));
        r.Loss.backward();
        var grad = logp.grad!.data<double>().ToArray();
        var total = x.Mask.Sum();
        for (var i = 0; i < B * T; i++)
        {
            var a = x.Adv[i / T];
            var ratio = Math.Exp(x.Logp[i] - x.Old[i]);
            var clipped = (a > 0 && ratio > 1.2) || (a < 0 && ratio < 0.8);
            // d/dℓ of −w·r·A is −w·r·A (r = exp(ℓ − ℓ_old)); a clipped term is constant in ℓ.
            var expected = x.Mask[i] == 0 || clipped ? 0 : -x.Weights[i] * ratio * a / total;
            Assert.True(Math.Abs(expected - grad[i]) < 1e-12, $"[{i}] expected {expected:R}, got {grad[i]:R}");
        }
    }

    [Fact]
    public void OnPolicyWithoutKlItsGradientIsRefAlignsReinforceGradient()
    {
        // At ratio 1 (ℓ_old = ⊥[ℓ]) the clipped objective's gradient is the policy gradient −A·∇ℓ of §3.
        var x = RandomBatch(3);
        using var a = T2(x.Logp, grad: true);
        using var b = T2(x.Logp, grad: true);
        using var clipped = ClippedPolicyLoss.Compute(a, T2(x.Mask), tensor(x.Adv, ScalarType.Float64), a.detach(), new ClippedPolicyLossOptions());
        using var reinforce = RefAlignPolicyGradientLoss.Compute(b, T2(x.Mask), tensor(x.Adv, ScalarType.Float64));
        clipped.Loss.backward();
        reinforce.Loss.backward();
        var (ga, gb) = (a.grad!.data<double>().ToArray(), b.grad!.data<double>().ToArray());
        for (var i = 0; i < ga.Length; i++) Assert.Equal(gb[i], ga[i], 14);
        Assert.Equal(0.0, clipped.Metrics[ClippedPolicyLoss.ClipFraction]);
        Assert.Equal(1.0, clipped.Metrics[ClippedPolicyLoss.RatioMean], 14);
    }

    [Fact]
    public void KlIsTheK3EstimatorAndZeroAtTheReference()
    {
        var x = RandomBatch(9);
        var o = new ClippedPolicyLossOptions { KlCoef = 1.0 };
        using var same = ClippedPolicyLoss.Compute(T2(x.Logp), T2(x.Mask), tensor(x.Adv, ScalarType.Float64), T2(x.Logp), o, T2(x.Logp));
        Assert.Equal(0.0, same.Metrics[ClippedPolicyLoss.Kl], 14);
        using var off = ClippedPolicyLoss.Compute(T2(x.Logp), T2(x.Mask), tensor(x.Adv, ScalarType.Float64), T2(x.Logp), o, T2(x.Ref));
        var expected = Enumerable.Range(0, B * T).Where(i => x.Mask[i] > 0)
            .Select(i => x.Ref[i] - x.Logp[i]).Select(d => Math.Exp(d) - d - 1).Average();
        Assert.Equal(expected, off.Metrics[ClippedPolicyLoss.Kl], 12);
        Assert.True(expected > 0);
    }

    [Fact]
    public void TruncatedImportanceWeightsAreCappedRatiosOnTheCompletionOnly()
    {
        var x = RandomBatch(21);
        var (w, mean, clip) = TruncatedImportance.Compute(T2(x.Logp), T2(x.Old), T2(x.Mask), cap: 1.0);
        using var _ = w;
        var values = w.data<double>().ToArray();
        var expected = Enumerable.Range(0, B * T).Select(i => x.Mask[i] == 0 ? 1.0 : Math.Min(Math.Exp(x.Logp[i] - x.Old[i]), 1.0)).ToArray();
        for (var i = 0; i < values.Length; i++) Assert.Equal(expected[i], values[i], 14);
        var on = Enumerable.Range(0, B * T).Where(i => x.Mask[i] > 0).ToList();
        Assert.Equal(on.Average(i => expected[i]), mean, 12);
        Assert.Equal(on.Count(i => Math.Exp(x.Logp[i] - x.Old[i]) > 1.0) / (double)on.Count, clip, 12);
        Assert.InRange(clip, 0.1, 0.9);
    }

    [Fact]
    public void ShapeErrorsNameTheArgument()
    {
        using var logp = zeros(2, 4);
        var o = new ClippedPolicyLossOptions();
        Assert.Equal("oldLogp", Assert.Throws<ArgumentException>(() => ClippedPolicyLoss.Compute(logp, zeros(2, 4), zeros(2), zeros(2, 3), o)).ParamName);
        Assert.Equal("advantages", Assert.Throws<ArgumentException>(() => ClippedPolicyLoss.Compute(logp, zeros(2, 4), zeros(3), zeros(2, 4), o)).ParamName);
        Assert.Equal("refLogp", Assert.Throws<ArgumentException>(() =>
            ClippedPolicyLoss.Compute(logp, zeros(2, 4), zeros(2), zeros(2, 4), o with { KlCoef = 0.1 })).ParamName);
    }

    // ---- advantage estimators (docs/algorithms.md §7) ----

    [Fact]
    public void GrpoNormalisesByTheUnbiasedGroupStd()
    {
        // R [1, 0, 0, 1]: mean 0.5, unbiased std √(1/3).
        var a = AdvantageBaselines.GroupNormalized([1, 0, 0, 1]);
        var s = Math.Sqrt(1.0 / 3);
        Assert.Equal([0.5 / (s + 1e-6), -0.5 / (s + 1e-6), -0.5 / (s + 1e-6), 0.5 / (s + 1e-6)], a);
        Assert.Equal([0.0, 0.0, 0.0], AdvantageBaselines.GroupNormalized([0.7, 0.7, 0.7])); // all equal: no signal, no NaN
    }

    [Fact]
    public void RlooSubtractsTheMeanOfTheOthers()
    {
        Assert.Equal([-1.5, 0.0, 1.5], AdvantageBaselines.LeaveOneOut([1, 2, 3]));
        // = K/(K−1)·(R − mean).
        var r = new[] { 0.9, 0.1, 0.4, 0.6 };
        var loo = AdvantageBaselines.LeaveOneOut(r);
        for (var i = 0; i < r.Length; i++) Assert.Equal(4.0 / 3 * (r[i] - r.Average()), loo[i], 14);
    }

    [Fact]
    public void ReinforcePlusPlusWhitensEveryTokenOfTheBatch()
    {
        // Rewards [1, 0] over 3 and 1 tokens: the token returns are [1, 1, 1, 0]; mean 0.75, unbiased variance 0.25.
        var a = AdvantageBaselines.BatchWhitened([1, 0], [3, 1]);
        Assert.Equal(0.25 / Math.Sqrt(0.25 + 1e-8), a[0], 14);
        Assert.Equal(-0.75 / Math.Sqrt(0.25 + 1e-8), a[1], 14);
        // Across prompts: ShapeBatch whitens the whole batch, not each group.
        var shaped = RewardShaping.ShapeBatch([0, 0, 1, 1], [1.0, 0.0, 1.0, 1.0], [3, 1, 2, 2], null, [false, false],
            new RewardShapingOptions { Baseline = AdvantageBaseline.BatchWhitened });
        var expected = AdvantageBaselines.BatchWhitened([1.0, 0.0, 1.0, 1.0], [3, 1, 2, 2]);
        Assert.Equal(expected, shaped.Select(s => s.Advantage));
        Assert.True(shaped[2].Advantage > 0, "a group of equal rewards still gets the batch baseline");
    }

    [Fact]
    public void HarmfulWeightAndClipApplyToEveryEstimator()
    {
        var o = new RewardShapingOptions { Baseline = AdvantageBaseline.GroupNormalized, AdvantageClip = 0.5, HarmfulWeight = 4 };
        var s = RewardShaping.ShapeGroup([1, 0, 0, 1], [1, 1, 1, 1], null, harmful: true, o);
        Assert.Equal([2.0, -2.0, -2.0, 2.0], s.Select(x => x.Advantage));
        Assert.All(s, x => Assert.True(x.Clipped));
    }
}
