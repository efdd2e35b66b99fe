using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// Conservative DPO (label smoothing ε, the assumed label-flip rate): per pair
/// <c>−(1−ε)·log σ(β·h) − ε·log σ(−β·h)</c>; ε = 0 is DPO. TRL's <c>sigmoid</c> loss with <c>label_smoothing</c>.
/// </summary>
public sealed class CDpoLoss(PreferenceLossOptions options) : MarginLoss(options, Algorithm.CDpo, "cDPO")
{
    private protected override Tensor PerPairLoss(Tensor h, Tensor? delta) => PerPair(h, Options.Beta, Options.LabelSmoothing);

    /// <summary><c>−(1−ε)·log σ(β·h) − ε·log σ(−β·h)</c> element-wise.</summary>
    public static Tensor PerPair(Tensor h, double beta, double labelSmoothing)
    {
        using var scope = NewDisposeScope();
        var z = h * beta;
        var perPair = -nn.functional.logsigmoid(z) * (1 - labelSmoothing) - nn.functional.logsigmoid(-z) * labelSmoothing;
        return perPair.MoveToOuterDisposeScope();
    }
}
