namespace RefAlign.Compute.Losses;

/// <summary>
/// Settings of a preference loss (docs/algorithms.md §2). β = 0.1 is the paper's value for every kind; λ ∈ {0.1, 0.3, 0.5, 1} in the
/// paper; ε (label smoothing) only applies to <see cref="Algorithm.CDpo"/>.
/// </summary>
public sealed record PreferenceLossOptions
{
    public Algorithm Kind { get; init; } = Algorithm.Dpo;

    /// <summary>β: the KL-regularisation strength (DPO temperature; IPO target margin is 1/(2β)). Finite, &gt; 0.</summary>
    public double Beta { get; init; } = 0.1;

    /// <summary>cDPO's ε, the assumed probability that a preference label is flipped; in [0, 0.5). Must be 0 for other kinds.</summary>
    public double LabelSmoothing { get; init; }

    /// <summary>Sr-DPO / Sr-IPO's λ, the weight of the self-refinement term Δ. Finite, ≥ 0 (0 reduces Sr-* to DPO / IPO).</summary>
    public double Lambda { get; init; } = 0.5;

    /// <summary>The self-refinement prompt p prepended (with a space) to the query for the prompted pass of Sr-*.</summary>
    public string RefinementPrompt { get; init; } = SelfRefinementPrompt.Default;

    /// <summary>True when the loss needs the log-probs of the prompted query p ⊕ x as well (Sr-DPO, Sr-IPO).</summary>
    public bool NeedsPrompted => Kind is Algorithm.SrDpo or Algorithm.SrIpo;

    /// <summary>Throws <see cref="ArgumentException"/> whose ParamName (and message) names the first invalid field.</summary>
    public void Validate()
    {
        if (Kind is not (Algorithm.Dpo or Algorithm.CDpo or Algorithm.Ipo or Algorithm.SrDpo or Algorithm.SrIpo))
            throw new ArgumentException($"kind: {Kind} is not a preference loss.", "kind");
        if (!(Beta > 0) || double.IsInfinity(Beta))
            throw new ArgumentException($"beta must be finite and > 0 (got {Beta}).", "beta");
        if (!(LabelSmoothing >= 0 && LabelSmoothing < 0.5))
            throw new ArgumentException($"label_smoothing must be in [0, 0.5) (got {LabelSmoothing}).", "label_smoothing");
        if (LabelSmoothing != 0 && Kind != Algorithm.CDpo)
            throw new ArgumentException(
                $"label_smoothing ({LabelSmoothing}) only applies to kind CDpo (got {Kind}); set it to 0 or choose CDpo.",
                "label_smoothing");
        if (!(Lambda >= 0) || double.IsInfinity(Lambda))
            throw new ArgumentException($"lambda must be finite and ≥ 0 (got {Lambda}).", "lambda");
        if (string.IsNullOrWhiteSpace(RefinementPrompt))
            throw new ArgumentException("refinement_prompt must be a non-empty string.", "refinement_prompt");
    }
}
