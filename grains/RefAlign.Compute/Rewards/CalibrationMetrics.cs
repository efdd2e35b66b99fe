namespace RefAlign.Compute.Rewards;

/// <summary>
/// Calibration of verbalised confidence against correctness (docs/algorithms.md §3, confidence scenario): expected calibration
/// error over equal-width bins and AUROC (how well confidence separates correct from incorrect answers).
/// </summary>
public static class CalibrationMetrics
{
    /// <summary>
    /// ECE = Σ_b (n_b / N) · |acc_b − conf_b| over <paramref name="bins"/> equal-width bins of [0, 1], where acc_b is the
    /// fraction correct and conf_b the mean confidence of the n_b samples in bin b; empty bins contribute nothing.
    /// Bin b holds confidences in [b/B, (b+1)/B), with the last bin closed: 0 falls in the first bin, 1.0 in the last.
    /// Confidences must lie in [0, 1].
    /// </summary>
    public static double ExpectedCalibrationError(IReadOnlyList<double> confidences, IReadOnlyList<bool> correct, int bins = 10)
    {
        CheckPair(confidences, correct);
        if (bins < 1) throw new ArgumentException($"bins must be ≥ 1 (got {bins}).", nameof(bins));
        var count = new int[bins];
        var confSum = new double[bins];
        var hits = new int[bins];
        for (var s = 0; s < confidences.Count; s++)
        {
            var c = confidences[s];
            if (c is not (>= 0 and <= 1))
                throw new ArgumentException($"confidences[{s}] must be in [0, 1] (got {c}).", nameof(confidences));
            var b = Math.Min((int)(c * bins), bins - 1);
            count[b]++;
            confSum[b] += c;
            if (correct[s]) hits[b]++;
        }
        var n = (double)confidences.Count;
        var ece = 0.0;
        for (var b = 0; b < bins; b++)
        {
            if (count[b] == 0) continue;
            var acc = (double)hits[b] / count[b];
            var conf = confSum[b] / count[b];
            ece += count[b] / n * Math.Abs(acc - conf);
        }
        return ece;
    }

    /// <summary>
    /// AUROC of confidence as a score for correctness: the probability that a random correct sample has a higher
    /// confidence than a random incorrect one, ties counting 1/2 (Mann–Whitney U / (n₊ n₋), via mid-ranks).
    /// Throws <see cref="ArgumentException"/> when all samples are correct or all incorrect (AUROC undefined).
    /// </summary>
    public static double Auroc(IReadOnlyList<double> confidences, IReadOnlyList<bool> correct)
    {
        CheckPair(confidences, correct);
        for (var s = 0; s < confidences.Count; s++)
            if (double.IsNaN(confidences[s]))
                throw new ArgumentException($"confidences[{s}] must not be NaN.", nameof(confidences));
        var positives = correct.Count(x => x);
        var negatives = correct.Count - positives;
        if (positives == 0 || negatives == 0)
            throw new ArgumentException(
                $"correct must contain both correct and incorrect samples (got {positives} correct, {negatives} incorrect).",
                nameof(correct));

        var order = Enumerable.Range(0, confidences.Count).OrderBy(s => confidences[s]).ToArray();
        var positiveRankSum = 0.0;
        for (var start = 0; start < order.Length;)
        {
            var end = start;
            while (end + 1 < order.Length && confidences[order[end + 1]] == confidences[order[start]]) end++;
            var midRank = (start + end) / 2.0 + 1.0;   // 1-based average rank of the tie block
            for (var t = start; t <= end; t++)
                if (correct[order[t]]) positiveRankSum += midRank;
            start = end + 1;
        }
        var u = positiveRankSum - positives * (positives + 1.0) / 2.0;
        return u / ((double)positives * negatives);
    }

    static void CheckPair(IReadOnlyList<double> confidences, IReadOnlyList<bool> correct)
    {
        ArgumentNullException.ThrowIfNull(confidences);
        ArgumentNullException.ThrowIfNull(correct);
        if (confidences.Count == 0) throw new ArgumentException("confidences must not be empty.", nameof(confidences));
        if (correct.Count != confidences.Count)
            throw new ArgumentException($"correct ({correct.Count}) must have one entry per confidence ({confidences.Count}).", nameof(correct));
    }
}
