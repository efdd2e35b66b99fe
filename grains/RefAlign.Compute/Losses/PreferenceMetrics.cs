using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// The implicit-reward margin shared by the preference losses and the batch metrics of docs/algorithms.md §2
/// (names as TRL and the DPO reference code log them).
/// </summary>
public static class PreferenceMetrics
{
    public const string RewardsChosen = "rewards/chosen";
    public const string RewardsRejected = "rewards/rejected";
    public const string RewardsMargins = "rewards/margins";
    public const string RewardsAccuracies = "rewards/accuracies";
    public const string LogpsChosen = "logps/chosen";
    public const string LogpsRejected = "logps/rejected";
    public const string Loss = "loss";
    public const string RefineDelta = "refine/delta";
    /// <summary>The Sr-DPO paper's "marginal": mean h, without β (TRL's rewards/margins is β·h).</summary>
    public const string Marginal = "refine/marginal";
    public const string PromptedAccuracies = "rewards/prompted_accuracies";

    /// <summary>
    /// h = [logπ(y+) − logπref(y+)] − [logπ(y−) − logπref(y−)], shape [B]. Gradients flow through the policy
    /// log-probs only; the reference ones are detached.
    /// </summary>
    public static Tensor Margin(PreferenceLogProbs lp)
    {
        ArgumentNullException.ThrowIfNull(lp);
        using var scope = NewDisposeScope();
        var h = (lp.PolicyChosen - lp.ReferenceChosen.detach()) - (lp.PolicyRejected - lp.ReferenceRejected.detach());
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The self-refinement term of paper eq. 12 under stop-gradient: ⊥Δ = β·h_p, with h_p the margin of the prompted
    /// tuples (p ⊕ x), policy and reference alike. Computed without an autograd graph, whatever the inputs carry.
    /// </summary>
    public static Tensor RefinementDelta(PreferenceLogProbs prompted, double beta)
    {
        ArgumentNullException.ThrowIfNull(prompted);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var hp = (prompted.PolicyChosen.detach() - prompted.ReferenceChosen.detach())
                 - (prompted.PolicyRejected.detach() - prompted.ReferenceRejected.detach());
        return (hp * beta).detach().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// rewards/chosen, rewards/rejected (means of β(logπ − logπref)), rewards/margins (mean difference),
    /// rewards/accuracies (fraction with the chosen reward strictly greater; ties count as wrong), refine/marginal
    /// (mean h, the paper's marginal), logps/chosen, logps/rejected (mean policy log-probs) and loss.
    /// </summary>
    public static Dictionary<string, double> Collect(PreferenceLogProbs plain, double beta, Tensor loss)
    {
        ArgumentNullException.ThrowIfNull(plain);
        ArgumentNullException.ThrowIfNull(loss);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (chosen, rejected) = Rewards(plain, beta);
        return new Dictionary<string, double>
        {
            [RewardsChosen] = Mean(chosen),
            [RewardsRejected] = Mean(rejected),
            [RewardsMargins] = Mean(chosen - rejected),
            [RewardsAccuracies] = Mean(chosen > rejected),
            [Marginal] = Mean(Margin(plain).detach()),
            [LogpsChosen] = Mean(plain.PolicyChosen.detach()),
            [LogpsRejected] = Mean(plain.PolicyRejected.detach()),
            [Loss] = Mean(loss.detach()),
        };
    }

    /// <summary>Adds refine/delta (mean Δ) and rewards/prompted_accuracies (accuracy of the prompted tuples) for Sr-*.</summary>
    public static void AddRefinement(Dictionary<string, double> metrics, PreferenceLogProbs prompted, Tensor delta, double beta)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(prompted);
        ArgumentNullException.ThrowIfNull(delta);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (chosen, rejected) = Rewards(prompted, beta);
        metrics[RefineDelta] = Mean(delta.detach());
        metrics[PromptedAccuracies] = Mean(chosen > rejected);
    }

    static (Tensor Chosen, Tensor Rejected) Rewards(PreferenceLogProbs lp, double beta) =>
        ((lp.PolicyChosen.detach() - lp.ReferenceChosen.detach()) * beta,
         (lp.PolicyRejected.detach() - lp.ReferenceRejected.detach()) * beta);

    static double Mean(Tensor t) => t.to(ScalarType.Float64).mean().item<double>();
}
