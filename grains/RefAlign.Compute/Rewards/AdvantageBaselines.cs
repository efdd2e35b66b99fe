namespace RefAlign.Compute.Rewards;

/// <summary>Which baseline turns a sample's (calibrated) reward into its advantage (docs/algorithms.md §3, §7).</summary>
public enum AdvantageBaseline
{
    /// <summary>RefAlign: <c>R_i − mean_j R_j</c> over the prompt's K samples.</summary>
    GroupMean,

    /// <summary>GRPO: <c>(R_i − mean_j R_j) / (std_j R_j + 1e-6)</c>, unbiased std over the prompt's K samples.</summary>
    GroupNormalized,

    /// <summary>RLOO: <c>R_i − mean_{j≠i} R_j</c>.</summary>
    LeaveOneOut,

    /// <summary>REINFORCE++: every token's return <c>R_i</c> whitened over all completion tokens of the batch.</summary>
    BatchWhitened,
}

/// <summary>
/// The advantage estimators of docs/algorithms.md §7 as pure functions of the rewards (and, for whitening, the
/// completion lengths). A group of one sample gets advantage 0 from every group estimator.
/// </summary>
public static class AdvantageBaselines
{
    /// <summary>GRPO's ε in the denominator (verl's <c>compute_grpo_outcome_advantage</c>).</summary>
    public const double GroupEpsilon = 1e-6;

    /// <summary>REINFORCE++'s ε under the square root (verl's <c>masked_whiten</c>).</summary>
    public const double WhitenEpsilon = 1e-8;

    public static double[] GroupMean(double[] r)
    {
        var k = r.Length;
        var mean = r.Sum() / k;
        // K = 1: R − R is exactly 0.
        return [.. r.Select(x => k == 1 ? 0.0 : x - mean)];
    }

    public static double[] GroupNormalized(double[] r)
    {
        var k = r.Length;
        // A group that agrees carries no signal; rounding in its mean must not be blown up by the 1e-6 denominator.
        if (r.All(x => x == r[0])) return new double[k];
        var mean = r.Sum() / k;
        var std = Math.Sqrt(r.Sum(x => (x - mean) * (x - mean)) / (k - 1));
        return [.. r.Select(x => (x - mean) / (std + GroupEpsilon))];
    }

    public static double[] LeaveOneOut(double[] r)
    {
        var k = r.Length;
        if (k == 1) return [0.0];
        var sum = r.Sum();
        return [.. r.Select(x => x - (sum - x) / (k - 1))];
    }

    /// <summary>
    /// Each sample's reward is the return of every one of its <paramref name="lengths"/>[i] tokens (outcome reward, γ = 1,
    /// no reward-side KL); the tokens of the whole batch are whitened together: mean and unbiased variance weighted by
    /// length, <c>(R_i − μ)/√(σ² + 1e-8)</c>. A batch of one token has variance 0 (no correction).
    /// </summary>
    public static double[] BatchWhitened(double[] r, IReadOnlyList<int> lengths)
    {
        if (lengths.Count != r.Length) throw new ArgumentException($"lengths ({lengths.Count}) must have one entry per reward ({r.Length}).", nameof(lengths));
        double n = lengths.Sum(l => (double)l);
        if (n == 0) return new double[r.Length];
        var mean = r.Select((x, i) => x * lengths[i]).Sum() / n;
        var variance = r.Select((x, i) => (x - mean) * (x - mean) * lengths[i]).Sum() / n;
        if (n > 1) variance *= n / (n - 1);
        var scale = 1.0 / Math.Sqrt(variance + WhitenEpsilon);
        return [.. r.Select(x => (x - mean) * scale)];
    }
}
