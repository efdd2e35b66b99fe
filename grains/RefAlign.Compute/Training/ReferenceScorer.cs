using RefAlign.Compute.Models;
using RefAlign.Compute.Training.ReferenceCache;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training;

/// <summary>
/// Frozen-reference log-probs for preference pairs, through the cache: each (prompt, completion) is run through the
/// reference once per weights hash. <paramref name="referenceScope"/> switches a shared model into reference mode
/// (LoRA adapters off) for the duration of a pass; a separate frozen model needs none.
/// </summary>
public sealed class ReferenceScorer(CausalLm model, ReferenceLogProbCache cache, int padId, Func<IDisposable?>? referenceScope = null)
{
    public string WeightsHash { get; } = WithScope(referenceScope, () => ReferenceLogProbCache.HashWeights(model));

    public ReferenceLogProbCache Cache => cache;

    /// <summary>Plain (and, with <paramref name="prompted"/>, prompted) reference log-probs for each pair.</summary>
    public IReadOnlyList<ReferenceLogProbs> Score(IReadOnlyList<PreferencePair> pairs, bool prompted, int maxBatch = 16)
    {
        var rows = new List<(int[] Prompt, int[] Completion)>(pairs.Count * 4);
        foreach (var p in pairs)
        {
            rows.Add((p.Prompt, p.Chosen));
            rows.Add((p.Prompt, p.Rejected));
            if (prompted)
            {
                var pp = p.PromptedPrompt ?? throw new ArgumentException($"pair {p.Id} has no prompted query (Sr-* needs one).");
                rows.Add((pp, p.Chosen));
                rows.Add((pp, p.Rejected));
            }
        }
        var values = WithScope(referenceScope, () =>
        {
            using (PolicySetup.EvalMode(model)) return cache.GetOrCompute(model, WeightsHash, rows, padId, maxBatch);
        });
        var per = prompted ? 4 : 2;
        return [.. pairs.Select((_, i) =>
        {
            var v = values.Skip(i * per).Take(per).ToArray();
            return prompted
                ? new ReferenceLogProbs(v[0].Sum, v[0].Mean, v[1].Sum, v[1].Mean, v[2].Sum, v[2].Mean, v[3].Sum, v[3].Mean)
                : new ReferenceLogProbs(v[0].Sum, v[0].Mean, v[1].Sum, v[1].Mean);
        })];
    }

    static T WithScope<T>(Func<IDisposable?>? scope, Func<T> work)
    {
        using var s = scope?.Invoke();
        using var _ = no_grad();
        return work();
    }
}
