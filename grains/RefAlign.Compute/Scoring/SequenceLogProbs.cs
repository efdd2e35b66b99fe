using RefAlign.Compute.Models;
using static TorchSharp.torch;

namespace RefAlign.Compute.Scoring;

/// <summary>How per-token log-probs of a completion are reduced (docs/algorithms.md §1).</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(SnakeCaseEnumConverter<LogProbReduction>))]
public enum LogProbReduction
{
    [System.Text.Json.Serialization.JsonStringEnumMemberName("sum")] Sum,
    [System.Text.Json.Serialization.JsonStringEnumMemberName("mean")] Mean,
}

/// <summary>Summed and mean completion log-probs, one value per row, plus the per-token values ([rows, length]).</summary>
public sealed record SequenceLogProbResult(Tensor Sum, Tensor Mean, Tensor PerToken, Tensor CompletionMask) : IDisposable
{
    public Tensor Reduced(LogProbReduction r) => r == LogProbReduction.Sum ? Sum : Mean;

    public void Dispose()
    {
        Sum.Dispose();
        Mean.Dispose();
        PerToken.Dispose();
        CompletionMask.Dispose();
    }
}

/// <summary>
/// logπ(y|x) = Σ over completion positions t of log softmax(logits[t−1])[token t]; prompt and padding positions are
/// masked out. Autograd flows when the caller has gradients enabled (the learner), not otherwise.
/// </summary>
public static class SequenceLogProbs
{
    public static SequenceLogProbResult Compute(CausalLm model, CollatedBatch batch)
    {
        using var scope = NewDisposeScope();
        var dev = model.Device;
        var ids = tensor(batch.InputIds, [batch.Rows, batch.Length], device: dev);
        var attn = tensor(batch.AttentionMask, [batch.Rows, batch.Length], device: dev);
        var comp = tensor(batch.CompletionMask, [batch.Rows, batch.Length], device: dev);
        var logits = model.Forward(ids, attn).to(ScalarType.Float32);
        var result = FromLogits(logits, ids, comp);
        return new SequenceLogProbResult(result.Sum.MoveToOuterDisposeScope(), result.Mean.MoveToOuterDisposeScope(),
            result.PerToken.MoveToOuterDisposeScope(), result.CompletionMask.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The log-probs of chosen and rejected completions after a shared prompt, in the rows
    /// <see cref="SequenceCollator.ConcatenatedPreference"/> gives ([chosen…, rejected…]), with each prompt run once: the
    /// prompts (left-padded) fill a KV cache, which both completions continue. For no-grad passes over long shared
    /// prefixes (Sr-*'s prompted query p ⊕ x); the values equal <see cref="Compute"/>'s up to float rounding.
    /// </summary>
    public static SequenceLogProbResult SharedPrefix(CausalLm model, IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> chosen,
        IReadOnlyList<int[]> rejected, int padId)
    {
        using var scope = NewDisposeScope();
        var dev = model.Device;
        int n = prompts.Count, p = prompts.Max(x => x.Length), c = Math.Max(chosen.Max(x => x.Length), rejected.Max(x => x.Length));
        if (prompts.Any(x => x.Length == 0) || c == 0) throw new ArgumentException("shared-prefix scoring needs non-empty prompts and completions.");
        var prefix = SequenceCollator.Collate([.. prompts.Select(x => (x, Array.Empty<int>()))], padId, PaddingSide.Left);
        var promptMask = tensor(prefix.AttentionMask, [n, p], device: dev);
        using var cache = model.NewCache(n, p);
        // The last prompt position predicts each completion's first token.
        var first = model.Forward(tensor(prefix.InputIds, [n, p], device: dev), promptMask, cache, lastOnly: true);
        using var both = cache.Tiled(2, p + c);
        var completions = SequenceCollator.Collate([.. chosen.Concat(rejected).Select(x => (Array.Empty<int>(), x))], padId, PaddingSide.Right);
        var ids = tensor(completions.InputIds, [2 * n, c], device: dev);
        var mask = tensor(completions.AttentionMask, [2 * n, c], device: dev);
        var rest = model.Forward(ids, cat([promptMask.repeat(2, 1), mask], 1), both);
        var logits = cat([first.repeat(2, 1, 1), rest.narrow(1, 0, c - 1)], 1).to(ScalarType.Float32);
        var maskF = mask.to(ScalarType.Float32);
        var perToken = logits.log_softmax(-1).gather(2, ids.unsqueeze(-1)).squeeze(-1) * maskF;
        var sum = perToken.sum(1);
        var mean = sum / maskF.sum(1).clamp_min(1);
        return new SequenceLogProbResult(sum.MoveToOuterDisposeScope(), mean.MoveToOuterDisposeScope(), perToken.MoveToOuterDisposeScope(),
            maskF.MoveToOuterDisposeScope());
    }

    /// <summary>The same reduction from precomputed logits [B, T, V].</summary>
    public static SequenceLogProbResult FromLogits(Tensor logits, Tensor inputIds, Tensor completionMask)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], t = inputIds.shape[1];
        var logp = logits.narrow(1, 0, t - 1).log_softmax(-1);
        var targets = inputIds.narrow(1, 1, t - 1);
        var tokenLogp = logp.gather(2, targets.unsqueeze(-1)).squeeze(-1);
        var mask = completionMask.narrow(1, 1, t - 1).to(ScalarType.Float32);
        // Position 0 can never be a predicted token; pad it so per-token values align with input positions.
        var perToken = cat([zeros([b, 1], ScalarType.Float32, logits.device), tokenLogp * mask], 1);
        var fullMask = cat([zeros([b, 1], ScalarType.Float32, logits.device), mask], 1);
        var sum = perToken.sum(1);
        var mean = sum / fullMask.sum(1).clamp_min(1);
        return new SequenceLogProbResult(sum.MoveToOuterDisposeScope(), mean.MoveToOuterDisposeScope(),
            perToken.MoveToOuterDisposeScope(), fullMask.MoveToOuterDisposeScope());
    }
}
