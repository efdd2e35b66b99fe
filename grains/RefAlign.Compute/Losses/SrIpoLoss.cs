using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// Self-refined IPO (Sr-IPO, paper Algorithm 2): per pair <c>(h − λ·⊥Δ − 1/(2β))²</c> with Δ = β·h_p (paper eq. 12)
/// under stop-gradient, so d/dh = 2(h − λΔ − 1/(2β)). As for IPO, the token reduction of the log-probs (sum or
/// per-token mean) is the caller's choice; the plain and prompted log-probs should use the same one.
/// </summary>
public sealed class SrIpoLoss(PreferenceLossOptions options) : MarginLoss(options, Algorithm.SrIpo, "Sr-IPO")
{
    private protected override Tensor PerPairLoss(Tensor h, Tensor? delta) => PerPair(h, delta!, Options.Beta, Options.Lambda);

    /// <summary><c>(h − λ·⊥Δ − 1/(2β))²</c> element-wise (<paramref name="delta"/> is detached here as well).</summary>
    public static Tensor PerPair(Tensor h, Tensor delta, double beta, double lambda)
    {
        using var scope = NewDisposeScope();
        return (h - delta.detach() * lambda - 1.0 / (2.0 * beta)).square().MoveToOuterDisposeScope();
    }
}
