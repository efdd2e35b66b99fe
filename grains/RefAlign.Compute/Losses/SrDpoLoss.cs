using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// Self-refined DPO (Sr-DPO, paper Algorithm 1): per pair <c>−log σ(β·h − λ·⊥Δ)</c> with Δ = β·h_p (paper eq. 12),
/// h_p the margin of the same pair under the prompted query p ⊕ x (policy and reference). ⊥ is a stop-gradient:
/// Δ only shifts the logit, so the gradient w.r.t. the policy log-probs is DPO's evaluated at the shifted logit.
/// </summary>
public sealed class SrDpoLoss(PreferenceLossOptions options) : MarginLoss(options, Algorithm.SrDpo, "Sr-DPO")
{
    private protected override Tensor PerPairLoss(Tensor h, Tensor? delta) => PerPair(h, delta!, Options.Beta, Options.Lambda);

    /// <summary><c>−log σ(β·h − λ·⊥Δ)</c> element-wise (<paramref name="delta"/> is detached here as well).</summary>
    public static Tensor PerPair(Tensor h, Tensor delta, double beta, double lambda)
    {
        using var scope = NewDisposeScope();
        return (-nn.functional.logsigmoid(h * beta - delta.detach() * lambda)).MoveToOuterDisposeScope();
    }
}
