using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;

namespace RefAlign.Compute.Training;

/// <summary>One sampled response: which batch position and sample it is, its tokens, their log-probs and text.</summary>
public sealed record Rollout(int Position, int PromptId, int SampleIndex, int[] Completion, float[] TokenLogProbs, string Text, bool Finished);

/// <summary>
/// RefAlign's sampling: K responses per prompt from the current policy. Each prompt's random stream is keyed by
/// (run seed, step, prompt id), so a prompt gets the same samples on whichever worker and in whichever shard it runs.
/// </summary>
public static class RolloutWorker
{
    public static IReadOnlyList<Rollout> Generate(CausalLm policy, Func<int[], string> decode, IReadOnlyList<ReferencePrompt> prompts,
        IReadOnlyList<int> positions, RefAlignSection cfg, long seed, int step, IReadOnlyCollection<int> eosIds, int padId)
    {
        using (PolicySetup.EvalMode(policy))
        {
            var options = new SamplingOptions
            {
                MaxNewTokens = cfg.MaxNewTokens, Temperature = cfg.Temperature, TopP = cfg.TopP, TopK = cfg.TopK,
                NumSamples = cfg.NumSamples, Seed = seed,
            };
            var promptSeeds = prompts.Select(p => unchecked((long)SplitMix64.Mix(step, p.Id))).ToList();
            var outs = TextGenerator.Generate(policy, [.. prompts.Select(p => p.Prompt)], options, eosIds, padId, promptSeeds: promptSeeds);
            return [.. outs.Select(o => new Rollout(positions[o.PromptIndex], prompts[o.PromptIndex].Id, o.SampleIndex, o.TokenIds,
                o.TokenLogProbs, decode(o.TokenIds), o.FinishReason == FinishReason.Eos))];
        }
    }
}
