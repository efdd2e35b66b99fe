using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// What every loss of the DPO family shares: validate the inputs, form the margin h (and for the self-refined ones
/// Δ = β·h_p from the prompted pairs, under stop-gradient), apply the loss's per-pair formula, average, collect the
/// metrics. A subclass supplies only its formula.
/// </summary>
public abstract class MarginLoss : IPreferenceLoss
{
    readonly bool _selfRefined;
    readonly string _displayName;

    private protected MarginLoss(PreferenceLossOptions options, Algorithm kind, string displayName)
    {
        Options = PreferenceLoss.Checked(options, kind);
        _selfRefined = options.NeedsPrompted;
        _displayName = displayName;
    }

    public PreferenceLossOptions Options { get; }

    /// <summary>Per-pair loss from the margin <paramref name="h"/> and, for Sr-*, the detached refinement Δ (else null).</summary>
    private protected abstract Tensor PerPairLoss(Tensor h, Tensor? delta);

    /// <summary>
    /// <paramref name="prompted"/> (the log-probs under p ⊕ x) is required by Sr-* and never receives a gradient;
    /// the plain losses ignore it.
    /// </summary>
    public PreferenceLossResult Compute(PreferenceLogProbs plain, PreferenceLogProbs? prompted = null)
    {
        ArgumentNullException.ThrowIfNull(plain);
        plain.EnsureValid(nameof(plain));
        if (_selfRefined) EnsurePrompted(plain, prompted, _displayName);
        using var scope = NewDisposeScope();
        var h = PreferenceMetrics.Margin(plain);
        var delta = _selfRefined ? PreferenceMetrics.RefinementDelta(prompted!, Options.Beta) : null;
        var perPair = PerPairLoss(h, delta);
        var loss = perPair.mean();
        var metrics = PreferenceMetrics.Collect(plain, Options.Beta, loss);
        if (_selfRefined) PreferenceMetrics.AddRefinement(metrics, prompted!, delta!, Options.Beta);
        return new PreferenceLossResult(loss.MoveToOuterDisposeScope(), perPair.MoveToOuterDisposeScope(), metrics);
    }

    /// <summary>Sr-* need the prompted log-probs of the same B pairs.</summary>
    static void EnsurePrompted(PreferenceLogProbs plain, PreferenceLogProbs? prompted, string loss)
    {
        if (prompted is null)
            throw new ArgumentException(
                $"prompted: {loss} needs the log-probs of the prompted query p ⊕ x (policy and reference); got none.",
                nameof(prompted));
        prompted.EnsureValid(nameof(prompted));
        if (prompted.Count != plain.Count)
            throw new ArgumentException(
                $"prompted: {prompted.Count} prompted pairs for {plain.Count} plain pairs.", nameof(prompted));
    }
}
