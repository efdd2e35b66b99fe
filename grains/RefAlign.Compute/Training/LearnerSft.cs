using RefAlign.Compute.Scoring;
using RefAlign.Compute.Training.Optimization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training;

/// <summary>Supervised fine-tuning (the papers' first stage): token cross-entropy on completion tokens only.</summary>
public sealed partial class Learner
{
    /// <summary>Metric names of SFT steps; evaluation reports them under <c>eval/</c>.</summary>
    public const string SftLoss = "loss", SftPerplexity = "perplexity", SftTokens = "tokens";

    /// <summary>
    /// One SFT optimizer step: −Σ log π(y_t | x, y_&lt;t) over every completion token of the batch, divided by their
    /// number (prompt and padding tokens are masked out). Each micro-batch contributes its tokens' share, so the step is
    /// the same whatever the micro-batch size, as TRL's SFT computes it with labels −100 on the prompt.
    /// </summary>
    public StepResult SftStep(int step, IReadOnlyList<SftSequence> rows)
    {
        if (Replay(step) is { } done) return done;
        var total = rows.Sum(r => r.Completion.Length);
        if (total == 0) throw new ArgumentException("the batch has no completion tokens.", nameof(rows));
        double nll = 0;
        Policy.train();
        foreach (var (start, count, _) in MicroBatches.Split(rows.Count, _config.MicroBatchSize))
        {
            using var scope = NewDisposeScope();
            var sum = CompletionNll([.. rows.Skip(start).Take(count)]);
            (sum / total).backward();
            nll += sum.to(ScalarType.Float64).item<double>();
        }
        return Commit(step, SftMetrics("", nll, total, rows));
    }

    /// <summary>Held-out loss and perplexity (no gradient, no dropout): <c>eval/loss</c>, <c>eval/perplexity</c>, <c>eval/tokens</c>.</summary>
    public IReadOnlyDictionary<string, double> EvaluateSft(IReadOnlyList<SftSequence> rows)
    {
        if (rows.Count == 0) return new Dictionary<string, double>();
        using (PolicySetup.EvalMode(Policy))
        {
            using var _ = no_grad();
            double nll = 0;
            foreach (var (start, count, _) in MicroBatches.Split(rows.Count, _config.MicroBatchSize))
            {
                using var scope = NewDisposeScope();
                nll += CompletionNll([.. rows.Skip(start).Take(count)]).to(ScalarType.Float64).item<double>();
            }
            return SftMetrics("eval/", nll, rows.Sum(r => r.Completion.Length), rows);
        }
    }

    static Dictionary<string, double> SftMetrics(string prefix, double nll, int tokens, IReadOnlyList<SftSequence> rows) => new()
    {
        [prefix + SftLoss] = nll / tokens,
        [prefix + SftPerplexity] = Math.Exp(nll / tokens),
        [prefix + SftTokens] = tokens,
        [prefix + "response_length/mean"] = rows.Average(r => r.Completion.Length),
    };

    /// <summary>Σ −log π over the completion tokens of <paramref name="rows"/> (a scalar, with a graph when gradients are on).</summary>
    /// <remarks>
    /// With <c>data.packing</c> the examples are laid end to end in rows of up to <c>data.max_length</c> tokens, attention
    /// kept inside each example: less padding, the same per-token values (so the same loss, up to float rounding).
    /// </remarks>
    Tensor CompletionNll(IReadOnlyList<SftSequence> rows)
    {
        var examples = rows.Select(r => (r.Prompt, r.Completion)).ToList();
        var packed = _config.Data.Packing;
        var batch = packed ? SequenceCollator.Pack(examples, _config.Data.MaxLength, _padId) : SequenceCollator.Collate(examples, _padId, PaddingSide.Right);
        var dev = Policy.Device;
        var ids = tensor(batch.InputIds, [batch.Rows, batch.Length], device: dev);
        var mask = tensor(batch.AttentionMask, [batch.Rows, batch.Length], device: dev);
        var logits = (packed ? Policy.ForwardPacked(ids, mask) : Policy.Forward(ids, mask)).to(ScalarType.Float32);
        using var lp = SequenceLogProbs.FromLogits(logits, ids, tensor(batch.CompletionMask, [batch.Rows, batch.Length], device: dev));
        return lp.Sum.sum().neg();
    }
}
