using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// IPO (Azar et al. 2023): per pair <c>(h − 1/(2β))²</c>. The paper and the DPO reference code feed summed
/// log-probs; TRL's IPO feeds per-token means. That choice is the caller's (the reduction of
/// <see cref="Scoring.SequenceLogProbResult"/> put into <see cref="PreferenceLogProbs"/>); this loss only sees numbers.
/// </summary>
public sealed class IpoLoss(PreferenceLossOptions options) : MarginLoss(options, Algorithm.Ipo, "IPO")
{
    private protected override Tensor PerPairLoss(Tensor h, Tensor? delta) => PerPair(h, Options.Beta);

    /// <summary><c>(h − 1/(2β))²</c> element-wise.</summary>
    public static Tensor PerPair(Tensor h, double beta)
    {
        using var scope = NewDisposeScope();
        return (h - 1.0 / (2.0 * beta)).square().MoveToOuterDisposeScope();
    }
}
