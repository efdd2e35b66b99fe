namespace RefAlign.Compute.Rewards;

/// <summary>
/// Settings of RefAlign's reward shaping (docs/algorithms.md §3): the length factor constant C, the advantage clip ε, the
/// weight on harmful prompts (safety runs: 4.0) and the calibration coefficient α (confidence runs).
/// The defaults disable everything: factor 1, no clip, weight 1, no confidence term.
/// </summary>
public sealed record RewardShapingOptions
{
    /// <summary>C in <c>1 + 1/(C + |y|)</c>; 0 disables the length factor (the factor is exactly 1).</summary>
    public double LengthConstant { get; init; }

    /// <summary>ε: advantages are clipped to [−ε, ε]; +∞ (the default) disables clipping.</summary>
    public double AdvantageClip { get; init; } = double.PositiveInfinity;

    /// <summary>Multiplies the (clipped) advantages of a harmful prompt's samples; 4.0 in the paper's safety runs.</summary>
    public double HarmfulWeight { get; init; } = 1.0;

    /// <summary>α in <c>R_i' = R_i + α Σ_j (R_i − R_j)(c_i − c_j)</c>; 0 disables the confidence term.</summary>
    public double CalibrationAlpha { get; init; }

    /// <summary>How a sample's advantage is baselined (RefAlign: the group mean).</summary>
    public AdvantageBaseline Baseline { get; init; } = AdvantageBaseline.GroupMean;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid field.</summary>
    public void Validate()
    {
        if (!(LengthConstant >= 0) || double.IsInfinity(LengthConstant))
            throw new ArgumentException($"length_constant must be finite and ≥ 0 (got {LengthConstant}).", nameof(LengthConstant));
        if (!(AdvantageClip > 0))
            throw new ArgumentException($"advantage_clip must be > 0 (got {AdvantageClip}).", nameof(AdvantageClip));
        if (!(HarmfulWeight > 0) || double.IsInfinity(HarmfulWeight))
            throw new ArgumentException($"harmful_weight must be finite and > 0 (got {HarmfulWeight}).", nameof(HarmfulWeight));
        if (!(CalibrationAlpha >= 0) || double.IsInfinity(CalibrationAlpha))
            throw new ArgumentException($"calibration_alpha must be finite and ≥ 0 (got {CalibrationAlpha}).", nameof(CalibrationAlpha));
        if (!Enum.IsDefined(Baseline))
            throw new ArgumentException($"baseline {Baseline} is not defined.", nameof(Baseline));
    }
}
