using RefAlign.Compute.Models;
using RefAlign.Compute.Scoring;
using RefAlign.Compute.Training.Optimization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training;

/// <summary>The policy's log-probs of one pair under the prompted query p ⊕ x (Sr-*'s Δ pass), in the run's reduction.</summary>
public sealed record PromptedPolicyLogProbs(double Chosen, double Rejected);

/// <summary>
/// Sr-*'s prompted no-grad pass exactly as the learner runs it — same micro-batches, eval mode, shared prefix — so a
/// policy replica at the learner's weight version computes the learner's own values (bit for bit on the same device)
/// while the learner runs its plain forward/backward.
/// </summary>
public static class PromptedPass
{
    /// <summary>One value pair per pair, in order; every pair needs its prompted query.</summary>
    public static IReadOnlyList<PromptedPolicyLogProbs> Compute(CausalLm policy, IReadOnlyList<PreferencePair> pairs, RunConfig config, int padId,
        bool sharePrefix = true)
    {
        var result = new List<PromptedPolicyLogProbs>(pairs.Count);
        foreach (var (start, count, _) in MicroBatches.Split(pairs.Count, config.MicroBatchSize))
        {
            using var scope = NewDisposeScope();
            var mb = pairs.Skip(start).Take(count).ToList();
            var prompts = mb.Select(p => p.PromptedPrompt ?? throw new ArgumentException($"pair {p.Id} has no prompted query (Sr-* needs one).")).ToList();
            // float32 → double → float32 is exact, so the learner gets the very values it would have computed.
            var values = NoGradValues(policy, prompts, [.. mb.Select(p => p.Chosen)], [.. mb.Select(p => p.Rejected)], config.Preference.LogpReduction, padId, sharePrefix)
                .to(ScalarType.Float32).cpu().data<float>().ToArray();
            for (var i = 0; i < count; i++) result.Add(new PromptedPolicyLogProbs(values[i], values[count + i]));
        }
        return result;
    }

    /// <summary>[chosen…, rejected…] policy log-probs without a graph and without LoRA dropout (a judgement, not training).</summary>
    internal static Tensor NoGradValues(CausalLm policy, List<int[]> prompts, List<int[]> chosen, List<int[]> rejected, LogProbReduction reduction,
        int padId, bool sharePrefix)
    {
        using var _ = no_grad();
        using var eval = PolicySetup.EvalMode(policy);
        // The prompt (p ⊕ x is long) is shared by both completions: run it once (KV cache) for the pair.
        var logps = sharePrefix
            ? SequenceLogProbs.SharedPrefix(policy, prompts, chosen, rejected, padId)
            : SequenceLogProbs.Compute(policy, SequenceCollator.ConcatenatedPreference(prompts, chosen, rejected, padId));
        return logps.Reduced(reduction);
    }
}
