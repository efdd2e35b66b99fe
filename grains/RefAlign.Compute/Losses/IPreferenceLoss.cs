using static TorchSharp.torch;

namespace RefAlign.Compute.Losses;

/// <summary>
/// Per-pair sequence log-probs, shape [B] each: logπ(y+|x), logπ(y−|x), logπref(y+|x), logπref(y−|x).
/// The policy ones carry autograd (the learner's forward pass); the reference ones do not (they are detached anyway).
/// The reduction over completion tokens (<c>Sum</c>, the DPO default, or <c>Mean</c>, TRL's IPO) is the caller's choice
/// (<see cref="Scoring.SequenceLogProbResult.Reduced"/>): this record only carries the numbers.
/// </summary>
public sealed record PreferenceLogProbs(Tensor PolicyChosen, Tensor PolicyRejected, Tensor ReferenceChosen, Tensor ReferenceRejected)
{
    /// <summary>Number of pairs B.</summary>
    public long Count => PolicyChosen.shape.Length == 1 ? PolicyChosen.shape[0] : -1;

    /// <summary>Throws <see cref="ArgumentException"/> unless all four tensors are non-empty, one-dimensional and of equal length.</summary>
    public void EnsureValid(string paramName)
    {
        ArgumentNullException.ThrowIfNull(PolicyChosen, paramName);
        ArgumentNullException.ThrowIfNull(PolicyRejected, paramName);
        ArgumentNullException.ThrowIfNull(ReferenceChosen, paramName);
        ArgumentNullException.ThrowIfNull(ReferenceRejected, paramName);
        var shapes = new[] { PolicyChosen.shape, PolicyRejected.shape, ReferenceChosen.shape, ReferenceRejected.shape };
        if (shapes.Any(s => s.Length != 1) || shapes.Any(s => s[0] != shapes[0][0]))
            throw new ArgumentException(
                $"{paramName}: log-probs must be four [B] tensors of equal length (got {string.Join(", ", shapes.Select(s => "[" + string.Join(",", s) + "]"))}).",
                paramName);
        if (shapes[0][0] == 0) throw new ArgumentException($"{paramName}: the batch holds no pairs.", paramName);
    }
}

/// <summary>The loss (scalar mean over pairs, with autograd), the per-pair values [B] and the batch metrics (docs/algorithms.md §2 names).</summary>
public sealed record PreferenceLossResult(Tensor Loss, Tensor PerPair, IReadOnlyDictionary<string, double> Metrics) : IDisposable
{
    public void Dispose()
    {
        Loss.Dispose();
        PerPair.Dispose();
    }
}

/// <summary>A preference loss of docs/algorithms.md §2.</summary>
public interface IPreferenceLoss
{
    PreferenceLossOptions Options { get; }

    /// <summary>
    /// Computes the loss of a batch. <paramref name="prompted"/> holds the log-probs of the same pairs under the prompted
    /// query p ⊕ x; it is required by Sr-DPO / Sr-IPO (<see cref="PreferenceLossOptions.NeedsPrompted"/>) and ignored by
    /// the others. Returned tensors belong to the caller (dispose them).
    /// </summary>
    PreferenceLossResult Compute(PreferenceLogProbs plain, PreferenceLogProbs? prompted);
}

/// <summary>Factory of the preference losses.</summary>
public static class PreferenceLoss
{
    /// <summary>Validates <paramref name="o"/> and returns the loss of its kind.</summary>
    public static IPreferenceLoss Create(PreferenceLossOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        o.Validate();
        return o.Kind switch
        {
            Algorithm.Dpo => new DpoLoss(o),
            Algorithm.CDpo => new CDpoLoss(o),
            Algorithm.Ipo => new IpoLoss(o),
            Algorithm.SrDpo => new SrDpoLoss(o),
            Algorithm.SrIpo => new SrIpoLoss(o),
            _ => throw new ArgumentException($"kind: unknown preference loss kind {o.Kind}.", "kind"),
        };
    }

    internal static PreferenceLossOptions Checked(PreferenceLossOptions o, Algorithm kind)
    {
        ArgumentNullException.ThrowIfNull(o);
        o.Validate();
        if (o.Kind != kind)
            throw new ArgumentException($"kind: options are for {o.Kind}, not {kind}.", "kind");
        return o;
    }
}
