namespace RefAlign.Compute.Rewards;

/// <summary>
/// RefAlign's reward shaping (docs/algorithms.md §3) as pure functions over plain doubles. For the K samples of one prompt:
/// <code>
///   R_i  = (1 + 1/(C + |y_i|)) · sim_i                  (factor 1 when C = 0)
///   R_i' = R_i + α · Σ_j (R_i − R_j)(c_i − c_j)          (only when α &gt; 0; c defaults to 1.0)
///   A_i  = clip(R_i' − b_i, −ε, ε)                      (b: the baseline, below)
///   A_i *= HarmfulWeight                                 (harmful prompts only)
/// </code>
/// The baseline is RefAlign's group mean unless <see cref="RewardShapingOptions.Baseline"/> picks GRPO's group
/// normalisation, RLOO's leave-one-out mean or REINFORCE++'s batch whitening (<see cref="AdvantageBaselines"/>,
/// docs/algorithms.md §7).
/// <para>
/// Order of harmful weight and clip: the spec and the RefAlign model card (seed 001) only say that harmful
/// prompts "get their advantage multiplied by a weight" and that advantages are "clipped to [−ε, ε]"; neither
/// fixes the order. The weight is therefore applied <b>after</b> clipping, so a clip cannot undo it: a harmful
/// prompt's advantages lie in [−w·ε, w·ε].
/// </para>
/// <para>
/// Every calibrated reward of the group sees the other samples' <i>uncalibrated</i> rewards R_j (the term is
/// computed from R, not from R'), exactly as the formula reads. A group of one sample has advantage 0.
/// </para>
/// </summary>
public static class RewardShaping
{
    /// <summary>Confidence assumed for every sample when no confidences are given (the parser's default).</summary>
    public const double DefaultConfidence = 1.0;

    /// <summary><c>1 + 1/(C + |y|)</c>; exactly 1 when <paramref name="c"/> is 0 (the factor is disabled).</summary>
    public static double LengthFactor(double c, int responseTokens)
    {
        if (!(c >= 0) || double.IsInfinity(c))
            throw new ArgumentException($"length constant must be finite and ≥ 0 (got {c}).", nameof(c));
        if (responseTokens < 0)
            throw new ArgumentException($"response length must be ≥ 0 (got {responseTokens}).", nameof(responseTokens));
        return c == 0 ? 1.0 : 1.0 + 1.0 / (c + responseTokens);
    }

    /// <summary>
    /// <c>α · Σ_j (R_i − R_j)(c_i − c_j)</c> over all samples j of the group (the j = i term is 0). Positive when
    /// sample i's confidence is ordered like its reward relative to the others.
    /// </summary>
    public static double CalibrationTerm(IReadOnlyList<double> rewards, IReadOnlyList<double> confidences, int i, double alpha)
    {
        ArgumentNullException.ThrowIfNull(rewards);
        ArgumentNullException.ThrowIfNull(confidences);
        if (rewards.Count == 0) throw new ArgumentException("rewards must not be empty.", nameof(rewards));
        if (confidences.Count != rewards.Count)
            throw new ArgumentException($"confidences ({confidences.Count}) must have one entry per reward ({rewards.Count}).", nameof(confidences));
        if (i < 0 || i >= rewards.Count)
            throw new ArgumentException($"i must be in [0, {rewards.Count}) (got {i}).", nameof(i));
        if (!(alpha >= 0) || double.IsInfinity(alpha))
            throw new ArgumentException($"alpha must be finite and ≥ 0 (got {alpha}).", nameof(alpha));
        CheckFinite(rewards, nameof(rewards));
        CheckConfidences(confidences, nameof(confidences));
        return Term(rewards, confidences, i, alpha);
    }

    /// <summary>
    /// Shapes the K samples of one prompt (see the class remarks). <paramref name="confidences"/> may be null:
    /// every sample then has confidence 1.0 and the calibration term is 0.
    /// </summary>
    public static IReadOnlyList<ShapedSample> ShapeGroup(IReadOnlyList<double> similarities, IReadOnlyList<int> lengths,
        IReadOnlyList<double>? confidences, bool harmful, RewardShapingOptions options)
    {
        ArgumentNullException.ThrowIfNull(similarities);
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (similarities.Count == 0) throw new ArgumentException("similarities must not be empty.", nameof(similarities));
        CheckSamples(similarities, lengths, confidences);
        var all = Enumerable.Range(0, similarities.Count).ToArray();
        return Shape(all, similarities, lengths, confidences, harmful, options);
    }

    /// <summary>
    /// Shapes many prompts at once: sample s belongs to prompt <c>promptIndex[s]</c>, whose harmful label is
    /// <c>harmfulByPrompt[promptIndex[s]]</c>. Samples of a prompt need not be adjacent; the group baseline is taken
    /// over all samples with the same prompt index. The result is in input order (result[s] is sample s).
    /// </summary>
    public static IReadOnlyList<ShapedSample> ShapeBatch(IReadOnlyList<int> promptIndex, IReadOnlyList<double> similarities,
        IReadOnlyList<int> lengths, IReadOnlyList<double>? confidences, IReadOnlyList<bool> harmfulByPrompt,
        RewardShapingOptions options)
    {
        ArgumentNullException.ThrowIfNull(promptIndex);
        ArgumentNullException.ThrowIfNull(similarities);
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(harmfulByPrompt);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (promptIndex.Count == 0) throw new ArgumentException("promptIndex must not be empty.", nameof(promptIndex));
        if (similarities.Count != promptIndex.Count)
            throw new ArgumentException($"similarities ({similarities.Count}) must have one entry per sample ({promptIndex.Count}).", nameof(similarities));
        CheckSamples(similarities, lengths, confidences);

        var groups = new Dictionary<int, List<int>>();
        for (var s = 0; s < promptIndex.Count; s++)
        {
            var p = promptIndex[s];
            if (p < 0 || p >= harmfulByPrompt.Count)
                throw new ArgumentException($"promptIndex[{s}] = {p} is outside harmfulByPrompt (count {harmfulByPrompt.Count}).", nameof(promptIndex));
            if (!groups.TryGetValue(p, out var members)) groups[p] = members = [];
            members.Add(s);
        }

        var result = new ShapedSample[promptIndex.Count];
        if (options.Baseline != AdvantageBaseline.BatchWhitened)
        {
            foreach (var (p, members) in groups)
            {
                var shaped = Shape(members, similarities, lengths, confidences, harmfulByPrompt[p], options);
                for (var k = 0; k < members.Count; k++) result[members[k]] = shaped[k];
            }
            return result;
        }

        // REINFORCE++: R' per group (calibration is a group's affair), then one baseline and scale for the whole batch.
        var calibrated = new Group[promptIndex.Count];
        foreach (var members in groups.Values)
        {
            var g = Calibrate(members, similarities, lengths, confidences, options);
            for (var k = 0; k < members.Count; k++) calibrated[members[k]] = g[k];
        }
        var raw = AdvantageBaselines.BatchWhitened([.. calibrated.Select(c => c.Calibrated)], lengths);
        for (var s = 0; s < result.Length; s++)
            result[s] = Finish(calibrated[s], similarities[s], lengths[s], raw[s], harmfulByPrompt[promptIndex[s]], options);
        return result;
    }

    /// <summary>One sample's length factor, reward, calibrated reward and confidence.</summary>
    readonly record struct Group(double Factor, double Reward, double Calibrated, double Confidence);

    /// <summary>Length factors, rewards and calibrated rewards of the samples at <paramref name="members"/> (one group).</summary>
    static Group[] Calibrate(IReadOnlyList<int> members, IReadOnlyList<double> similarities, IReadOnlyList<int> lengths,
        IReadOnlyList<double>? confidences, RewardShapingOptions options)
    {
        var k = members.Count;
        var factors = new double[k];
        var rewards = new double[k];
        var conf = new double[k];
        for (var m = 0; m < k; m++)
        {
            var s = members[m];
            factors[m] = LengthFactor(options.LengthConstant, lengths[s]);
            rewards[m] = factors[m] * similarities[s];
            conf[m] = confidences?[s] ?? DefaultConfidence;
        }
        var result = new Group[k];
        for (var m = 0; m < k; m++)
            result[m] = new Group(factors[m], rewards[m],
                options.CalibrationAlpha == 0 ? rewards[m] : rewards[m] + Term(rewards, conf, m, options.CalibrationAlpha), conf[m]);
        return result;
    }

    /// <summary>Shapes the samples at <paramref name="members"/> (indices into the lists) as one group; inputs already checked.</summary>
    static ShapedSample[] Shape(IReadOnlyList<int> members, IReadOnlyList<double> similarities, IReadOnlyList<int> lengths,
        IReadOnlyList<double>? confidences, bool harmful, RewardShapingOptions options)
    {
        var g = Calibrate(members, similarities, lengths, confidences, options);
        var raw = options.Baseline switch
        {
            AdvantageBaseline.GroupNormalized => AdvantageBaselines.GroupNormalized([.. g.Select(x => x.Calibrated)]),
            AdvantageBaseline.LeaveOneOut => AdvantageBaselines.LeaveOneOut([.. g.Select(x => x.Calibrated)]),
            AdvantageBaseline.BatchWhitened => AdvantageBaselines.BatchWhitened([.. g.Select(x => x.Calibrated)], [.. members.Select(s => lengths[s])]),
            _ => AdvantageBaselines.GroupMean([.. g.Select(x => x.Calibrated)]),
        };
        var result = new ShapedSample[g.Length];
        for (var m = 0; m < g.Length; m++)
            result[m] = Finish(g[m], similarities[members[m]], lengths[members[m]], raw[m], harmful, options);
        return result;
    }

    /// <summary>Clip, then the harmful weight (see class remarks).</summary>
    static ShapedSample Finish(Group g, double similarity, int length, double raw, bool harmful, RewardShapingOptions options)
    {
        var eps = options.AdvantageClip;
        var advantage = Math.Clamp(raw, -eps, eps) * (harmful ? options.HarmfulWeight : 1.0);
        return new ShapedSample(similarity, length, g.Factor, g.Reward, g.Calibrated, advantage, Math.Abs(raw) > eps, g.Confidence);
    }

    static double Term(IReadOnlyList<double> rewards, IReadOnlyList<double> confidences, int i, double alpha)
    {
        var sum = 0.0;
        for (var j = 0; j < rewards.Count; j++) sum += (rewards[i] - rewards[j]) * (confidences[i] - confidences[j]);
        return alpha * sum;
    }

    static void CheckSamples(IReadOnlyList<double> similarities, IReadOnlyList<int> lengths, IReadOnlyList<double>? confidences)
    {
        if (lengths.Count != similarities.Count)
            throw new ArgumentException($"lengths ({lengths.Count}) must have one entry per sample ({similarities.Count}).", nameof(lengths));
        if (confidences is not null && confidences.Count != similarities.Count)
            throw new ArgumentException($"confidences ({confidences.Count}) must have one entry per sample ({similarities.Count}).", nameof(confidences));
        CheckFinite(similarities, nameof(similarities));
        for (var s = 0; s < lengths.Count; s++)
            if (lengths[s] < 0) throw new ArgumentException($"lengths[{s}] must be ≥ 0 (got {lengths[s]}).", nameof(lengths));
        if (confidences is not null) CheckConfidences(confidences, nameof(confidences));
    }

    static void CheckFinite(IReadOnlyList<double> values, string name)
    {
        for (var s = 0; s < values.Count; s++)
            if (!double.IsFinite(values[s])) throw new ArgumentException($"{name}[{s}] must be finite (got {values[s]}).", name);
    }

    static void CheckConfidences(IReadOnlyList<double> values, string name)
    {
        for (var s = 0; s < values.Count; s++)
            if (values[s] is not (>= 0 and <= 1)) throw new ArgumentException($"{name}[{s}] must be in [0, 1] (got {values[s]}).", name);
    }
}
