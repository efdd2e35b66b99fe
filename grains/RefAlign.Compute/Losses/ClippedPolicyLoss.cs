using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>How the per-token terms of a batch are averaged (docs/algorithms.md §7).</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<LossAveraging>))]
public enum LossAveraging
{
    /// <summary>One mean over every completion token of the batch (DAPO's token-level loss; RefAlign's own).</summary>
    [JsonStringEnumMemberName("token")] Token,

    /// <summary>Each sequence's token mean, then the mean over sequences (the GRPO paper's 1/G Σ 1/|o| Σ_t).</summary>
    [JsonStringEnumMemberName("sequence")] Sequence,
}

/// <summary>Settings of <see cref="ClippedPolicyLoss"/>.</summary>
public sealed record ClippedPolicyLossOptions
{
    /// <summary>ε: the ratio is clipped to [1 − ε, 1 + ε].</summary>
    public double ClipEpsilon { get; init; } = 0.2;

    /// <summary>β of the k3 KL to the reference; 0 drops the term.</summary>
    public double KlCoef { get; init; }

    public LossAveraging Averaging { get; init; } = LossAveraging.Token;
}

/// <summary>The clipped loss (scalar, with autograd), each sequence's share of it, and the batch metrics.</summary>
public sealed record ClippedPolicyResult(Tensor Loss, double[] PerSample, IReadOnlyDictionary<string, double> Metrics) : IDisposable
{
    public void Dispose() => Loss.Dispose();
}

/// <summary>
/// The GRPO family's objective (docs/algorithms.md §7), per completion token t of sequence b:
/// <code>
///   r    = exp(ℓ − ℓ_old)                                  ℓ_old: the behaviour log-probs (or, off-policy, ⊥[ℓ])
///   pg   = −w · min(r·A, clip(r, 1−ε, 1+ε)·A)              w: truncated importance weight (1 when none)
///   kl   = exp(ℓ_ref − ℓ) − (ℓ_ref − ℓ) − 1                 (k3; only when β &gt; 0)
///   term = pg + β·kl
/// </code>
/// averaged over the batch by token or by sequence. <c>ℓ_old</c>, <c>ℓ_ref</c>, <c>w</c> and <c>A</c> are constants.
/// </summary>
public static class ClippedPolicyLoss
{
    public const string ClipFraction = "policy/clip_fraction";
    public const string RatioMean = "policy/ratio_mean";
    public const string Kl = "kl";

    /// <param name="logp">ℓ [B, T] with a graph, §1's layout.</param>
    /// <param name="mask">completion mask [B, T].</param>
    /// <param name="advantages">A [B].</param>
    /// <param name="oldLogp">ℓ_old [B, T] (read on completion positions only).</param>
    /// <param name="refLogp">ℓ_ref [B, T]; required when β &gt; 0.</param>
    /// <param name="weights">w [B, T]; null: 1.</param>
    /// <param name="entropies">adds the masked mean entropy metric.</param>
    public static ClippedPolicyResult Compute(Tensor logp, Tensor mask, Tensor advantages, Tensor oldLogp, ClippedPolicyLossOptions options,
        Tensor? refLogp = null, Tensor? weights = null, Tensor? entropies = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (logp.dim() != 2) throw new ArgumentException($"logp must be [B, T] (got {Shape(logp)}).", nameof(logp));
        foreach (var (t, name) in new[] { (mask, nameof(mask)), (oldLogp, nameof(oldLogp)), (refLogp, nameof(refLogp)), (weights, nameof(weights)), (entropies, nameof(entropies)) })
            if (t is not null && !t.shape.SequenceEqual(logp.shape))
                throw new ArgumentException($"{name} {Shape(t)} must match logp {Shape(logp)}.", name);
        if (advantages.dim() != 1 || advantages.shape[0] != logp.shape[0])
            throw new ArgumentException($"advantages must be [B] = [{logp.shape[0]}] (got {Shape(advantages)}).", nameof(advantages));
        if (logp.shape[0] == 0) throw new ArgumentException("the batch holds no sequences.", nameof(logp));
        if (!(options.ClipEpsilon > 0) || !double.IsFinite(options.ClipEpsilon))
            throw new ArgumentException($"clip_epsilon must be finite and > 0 (got {options.ClipEpsilon}).", nameof(options));
        if (!(options.KlCoef >= 0) || !double.IsFinite(options.KlCoef))
            throw new ArgumentException($"kl_coef must be finite and ≥ 0 (got {options.KlCoef}).", nameof(options));
        if (options.KlCoef > 0 && refLogp is null) throw new ArgumentException("kl_coef > 0 needs the reference log-probs.", nameof(refLogp));

        using var scope = NewDisposeScope();
        var dtype = logp.dtype;
        var m = mask.detach().to(dtype);
        var on = m > 0;
        var adv = advantages.detach().to(dtype).unsqueeze(1);
        // Off the completion the inputs are junk (pads, prompt positions): zero them before exp so nothing overflows.
        var logRatio = where(on, logp - oldLogp.detach().to(dtype), zeros_like(logp));
        var ratio = logRatio.exp();
        var eps = options.ClipEpsilon;
        var unclipped = ratio * adv;
        var clipped = ratio.clamp(1 - eps, 1 + eps) * adv;
        var surrogate = minimum(unclipped, clipped);
        var term = -surrogate;
        if (weights is not null) term = term * weights.detach().to(dtype);
        Tensor? kl = null;
        if (options.KlCoef > 0)
        {
            var d = where(on, refLogp!.detach().to(dtype) - logp, zeros_like(logp));
            kl = d.exp() - d - 1;
            term = term + options.KlCoef * kl;
        }
        term = term * m;
        var lengths = m.sum(1);
        var batch = logp.shape[0];
        var perSample = options.Averaging == LossAveraging.Token
            ? term.sum(1) / lengths.sum().clamp_min(1)
            : term.sum(1) / lengths.clamp_min(1) / batch;
        var loss = perSample.sum();

        Dictionary<string, double> metrics;
        double[] perSampleValues;
        using (no_grad())
        {
            perSampleValues = perSample.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
            var m64 = m.to(ScalarType.Float64);
            var tokens = m64.sum().clamp_min(1);
            double Mean(Tensor x) => ((x.detach().to(ScalarType.Float64) * m64).sum() / tokens).item<double>();
            var a = advantages.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
            var aMean = a.Average();
            metrics = new Dictionary<string, double>
            {
                [RefAlignPolicyGradientLoss.Loss] = loss.detach().to(ScalarType.Float64).item<double>(),
                [ClipFraction] = Mean((clipped < unclipped).to(ScalarType.Float64)),
                [RatioMean] = Mean(ratio),
                [RefAlignPolicyGradientLoss.AdvantageMean] = aMean,
                [RefAlignPolicyGradientLoss.AdvantageStd] = Math.Sqrt(a.Select(x => (x - aMean) * (x - aMean)).Average()),
                [RefAlignPolicyGradientLoss.AdvantageMin] = a.Min(),
                [RefAlignPolicyGradientLoss.AdvantageMax] = a.Max(),
                [RefAlignPolicyGradientLoss.ResponseLengthMean] = lengths.to(ScalarType.Float64).mean().item<double>(),
            };
            if (kl is not null) metrics[Kl] = Mean(kl);
            if (entropies is not null) metrics[RefAlignPolicyGradientLoss.Entropy] = Mean(entropies);
        }
        return new ClippedPolicyResult(loss.MoveToOuterDisposeScope(), perSampleValues, metrics);
    }

    static string Shape(Tensor t) => "[" + string.Join(",", t.shape) + "]";
}

/// <summary>
/// Off-policy correction for pipelined runs (docs/algorithms.md §8): the truncated importance weight of each completion
/// token, <c>w = min(π(y_t)/μ(y_t), cap)</c> with π the learner's policy before the step (no gradient) and μ the
/// behaviour policy the generator sampled with (its recorded log-probs).
/// </summary>
public static class TruncatedImportance
{
    public const string WeightMean = "off_policy/is_weight_mean";
    public const string ClipFraction = "off_policy/is_clip_fraction";

    /// <summary>Weights [B, T] (1 off the completion), their masked mean and the fraction of tokens the cap truncated.</summary>
    public static (Tensor Weights, double Mean, double ClipFraction) Compute(Tensor logp, Tensor behaviour, Tensor mask, double cap)
    {
        if (!(cap > 0) || double.IsNaN(cap)) throw new ArgumentException($"cap must be > 0 (got {cap}).", nameof(cap));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var on = mask > 0;
        var raw = where(on, (logp.detach() - behaviour.to(logp.dtype)).exp(), ones_like(logp));
        var weights = raw.clamp_max(cap);
        var m = mask.to(ScalarType.Float64);
        var tokens = m.sum().clamp_min(1);
        var mean = ((weights.to(ScalarType.Float64) * m).sum() / tokens).item<double>();
        var clip = (((raw > cap).to(ScalarType.Float64) * m).sum() / tokens).item<double>();
        return (weights.MoveToOuterDisposeScope(), mean, clip);
    }
}
