namespace RefAlign.Compute.Evaluation;

/// <summary>A 95 % percentile bootstrap interval.</summary>
public sealed record Interval(double Low, double High);

/// <summary>Bootstrap intervals over prompts, seeded with <see cref="SplitMix64"/> so a report is reproducible.</summary>
public static class EvalStatistics
{
    /// <summary>
    /// Percentile interval (2.5 %, 97.5 %) of the mean of <paramref name="values"/> over <paramref name="resamples"/>
    /// resamples with replacement. Values are per prompt, so samples of one prompt move together.
    /// </summary>
    public static Interval BootstrapMean(IReadOnlyList<double> values, int resamples, long seed)
    {
        if (values.Count == 0) throw new ArgumentException("no values to bootstrap.", nameof(values));
        var rng = new SplitMix64(unchecked((ulong)seed));
        var means = new double[resamples];
        for (var b = 0; b < resamples; b++)
        {
            var sum = 0.0;
            for (var i = 0; i < values.Count; i++) sum += values[(int)rng.NextBelow((ulong)values.Count)];
            means[b] = sum / values.Count;
        }
        Array.Sort(means);
        return new Interval(Percentile(means, 0.025), Percentile(means, 0.975));
    }

    // Linear interpolation between order statistics (numpy's default).
    static double Percentile(double[] sorted, double q)
    {
        var at = q * (sorted.Length - 1);
        var lo = (int)Math.Floor(at);
        var hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo]);
    }
}
