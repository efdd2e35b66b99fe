using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>The policy-gradient loss (scalar, with autograd) and its batch metrics.</summary>
public sealed record PolicyGradientResult(Tensor Loss, IReadOnlyDictionary<string, double> Metrics) : IDisposable
{
    public void Dispose() => Loss.Dispose();
}

/// <summary>
/// RefAlign's REINFORCE loss (docs/algorithms.md §3 step 4): <c>−A·log π(y|x)</c> as a token-level masked mean over the batch,
/// <c>loss = −Σ_{b,t} A_b · logp_{b,t} · m_{b,t} / Σ_{b,t} m_{b,t}</c>. No KL term, no reference model.
/// The advantages (already baselined, clipped and weighted by the reward shaping) are constants: no gradient.
/// </summary>
public static class RefAlignPolicyGradientLoss
{
    public const string Loss = "loss";
    public const string AdvantageMean = "advantage/mean";
    public const string AdvantageStd = "advantage/std";
    public const string AdvantageMin = "advantage/min";
    public const string AdvantageMax = "advantage/max";
    public const string ResponseLengthMean = "response_length/mean";
    public const string Entropy = "entropy";

    /// <summary>
    /// <paramref name="tokenLogProbs"/> and <paramref name="completionMask"/> are [B, T] in the layout of
    /// <see cref="Scoring.SequenceLogProbResult.PerToken"/> / <c>CompletionMask</c>; <paramref name="advantages"/> is [B].
    /// <paramref name="tokenEntropies"/> ([B, T], same layout; see <see cref="TokenEntropies"/>) adds the "entropy"
    /// metric, the masked mean token entropy. advantage/std is the population standard deviation (0 for one sample).
    /// An all-zero mask gives loss 0. <paramref name="tokenWeights"/> ([B, T], constants) are a pipelined run's truncated
    /// importance weights (docs/algorithms.md §8), multiplying each token's term; null leaves the loss exactly as without.
    /// </summary>
    public static PolicyGradientResult Compute(Tensor tokenLogProbs, Tensor completionMask, Tensor advantages,
        Tensor? tokenEntropies = null, Tensor? tokenWeights = null)
    {
        ArgumentNullException.ThrowIfNull(tokenLogProbs);
        ArgumentNullException.ThrowIfNull(completionMask);
        ArgumentNullException.ThrowIfNull(advantages);
        if (tokenLogProbs.dim() != 2)
            throw new ArgumentException($"tokenLogProbs must be [B, T] (got {Shape(tokenLogProbs)}).", nameof(tokenLogProbs));
        if (!completionMask.shape.SequenceEqual(tokenLogProbs.shape))
            throw new ArgumentException(
                $"completionMask {Shape(completionMask)} must match tokenLogProbs {Shape(tokenLogProbs)}.", nameof(completionMask));
        if (advantages.dim() != 1 || advantages.shape[0] != tokenLogProbs.shape[0])
            throw new ArgumentException(
                $"advantages must be [B] = [{tokenLogProbs.shape[0]}] (got {Shape(advantages)}).", nameof(advantages));
        if (tokenEntropies is not null && !tokenEntropies.shape.SequenceEqual(tokenLogProbs.shape))
            throw new ArgumentException(
                $"tokenEntropies {Shape(tokenEntropies)} must match tokenLogProbs {Shape(tokenLogProbs)}.", nameof(tokenEntropies));
        if (tokenWeights is not null && !tokenWeights.shape.SequenceEqual(tokenLogProbs.shape))
            throw new ArgumentException(
                $"tokenWeights {Shape(tokenWeights)} must match tokenLogProbs {Shape(tokenLogProbs)}.", nameof(tokenWeights));
        if (tokenLogProbs.shape[0] == 0)
            throw new ArgumentException("the batch holds no sequences.", nameof(tokenLogProbs));

        using var scope = NewDisposeScope();
        var dtype = tokenLogProbs.dtype;
        var mask = completionMask.detach().to(dtype);
        var adv = advantages.detach().to(dtype);
        var lengths = mask.sum(1);
        var denom = lengths.sum().clamp_min(1);
        var loss = tokenWeights is null
            ? -(adv.unsqueeze(1) * tokenLogProbs * mask).sum() / denom
            : -(adv.unsqueeze(1) * tokenWeights.detach().to(dtype) * tokenLogProbs * mask).sum() / denom;

        Dictionary<string, double> metrics;
        using (no_grad())
        {
            var a = adv.to(ScalarType.Float64).cpu().data<double>().ToArray();
            var mean = a.Average();
            metrics = new Dictionary<string, double>
            {
                [Loss] = loss.detach().to(ScalarType.Float64).item<double>(),
                [AdvantageMean] = mean,
                [AdvantageStd] = Math.Sqrt(a.Select(x => (x - mean) * (x - mean)).Average()),
                [AdvantageMin] = a.Min(),
                [AdvantageMax] = a.Max(),
                [ResponseLengthMean] = lengths.to(ScalarType.Float64).mean().item<double>(),
            };
            if (tokenEntropies is not null)
                metrics[Entropy] = ((tokenEntropies.detach().to(ScalarType.Float64) * mask.to(ScalarType.Float64)).sum()
                                    / denom.to(ScalarType.Float64)).item<double>();
        }
        return new PolicyGradientResult(loss.MoveToOuterDisposeScope(), metrics);
    }

    /// <summary>
    /// Per-token entropies of the policy's next-token distributions from logits [B, T, V], aligned like
    /// <see cref="Scoring.SequenceLogProbs.FromLogits"/>: position t holds H(softmax(logits[:, t−1])) (the distribution
    /// that predicted token t), position 0 holds 0. Computed without autograd; result [B, T], float32 or wider.
    /// </summary>
    public static Tensor TokenEntropies(Tensor logits)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (logits.dim() != 3)
            throw new ArgumentException($"logits must be [B, T, V] (got {Shape(logits)}).", nameof(logits));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long b = logits.shape[0], t = logits.shape[1];
        var l = logits.detach();
        if (l.dtype != ScalarType.Float64) l = l.to(ScalarType.Float32);
        var logp = l.narrow(1, 0, Math.Max(t - 1, 0)).log_softmax(-1);
        var prob = logp.exp();
        // p·log p → 0 where p = 0 (−∞ logits from a warper would otherwise give NaN).
        var h = -where(prob > 0, prob * logp, zeros_like(prob)).sum(-1);
        var result = cat([zeros([b, Math.Min(t, 1)], l.dtype, l.device), h], 1);
        return result.MoveToOuterDisposeScope();
    }

    static string Shape(Tensor t) => "[" + string.Join(",", t.shape) + "]";
}
