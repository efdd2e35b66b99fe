using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// DPO (Rafailov et al. 2023): per pair <c>−log σ(β·h)</c>, h the implicit-reward margin
/// (<see cref="PreferenceMetrics.Margin"/>). log σ is evaluated stably (logsigmoid). The loss is the mean over pairs.
/// </summary>
public sealed class DpoLoss(PreferenceLossOptions options) : MarginLoss(options, Algorithm.Dpo, "DPO")
{
    private protected override Tensor PerPairLoss(Tensor h, Tensor? delta) => PerPair(h, Options.Beta);

    /// <summary><c>−log σ(β·h)</c> element-wise.</summary>
    public static Tensor PerPair(Tensor h, double beta)
    {
        using var scope = NewDisposeScope();
        return (-nn.functional.logsigmoid(h * beta)).MoveToOuterDisposeScope();
    }
}
