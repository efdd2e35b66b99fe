using RefAlign.Compute.Rewards;

namespace RefAlign.Compute.Training;

/// <summary>
/// What a reward scores, one entry per sample: the prompt text, the response (without a confidence tail), the
/// prompt's reference answer and its verifiable answer (null where the data has none).
/// </summary>
public sealed record RewardInputs(IReadOnlyList<string> Prompts, IReadOnlyList<string> Responses, IReadOnlyList<string> References,
    IReadOnlyList<string?> Answers)
{
    public int Count => Responses.Count;

    /// <summary>Samples <paramref name="start"/>..start+count (a chunk for one scorer call).</summary>
    public RewardInputs Slice(int start, int count) =>
        new([.. Prompts.Skip(start).Take(count)], [.. Responses.Skip(start).Take(count)], [.. References.Skip(start).Take(count)], [.. Answers.Skip(start).Take(count)]);
}

/// <summary>Every reward's score of every sample, their weighted totals, and (with a rule reward) which answers were correct.</summary>
public sealed record RewardScores(IReadOnlyList<RewardSpec> Rewards, IReadOnlyList<double[]> PerReward, double[] Totals, bool[]? Correct)
{
    /// <summary>BERTScore F1 of each sample when the run scores with it, else null.</summary>
    public double[]? BertScore => Rewards.ToList().FindIndex(r => r.Kind == RewardKind.BertScore) is var i and >= 0 ? PerReward[i] : null;

    /// <summary><c>reward/&lt;kind&gt;</c> per reward, <c>reward/total</c> beside several, <c>bertscore/f1</c> and <c>accuracy</c> where they apply.</summary>
    public Dictionary<string, double> Metrics(string prefix = "")
    {
        var m = new Dictionary<string, double>();
        for (var k = 0; k < Rewards.Count; k++) m[prefix + RewardSpec.MetricName(Rewards, k)] = PerReward[k].Average();
        if (Rewards.Count > 1) m[prefix + "reward/total"] = Totals.Average();
        if (BertScore is { } f1) m[prefix + "bertscore/f1"] = f1.Average();
        if (Correct is { } c) m[prefix + "accuracy"] = c.Count(x => x) / (double)c.Length;
        return m;
    }
}

/// <summary>
/// The rewards of a run over one batch of samples (docs/algorithms.md §9), the same code in training, periodic
/// evaluation and <c>refalign eval</c>: BERTScore through <see cref="ITrainingServices.SimilarityAsync"/>, rules here
/// (pure functions of the text), reward models and remote services through <see cref="ITrainingServices.RewardAsync"/>.
/// </summary>
public static class RewardScoring
{
    public static async Task<RewardScores> ScoreAsync(RefAlignSection section, ITrainingServices services, RewardInputs inputs, CancellationToken cancellation)
    {
        var rewards = section.EffectiveRewards;
        bool[]? correct = null;
        var work = rewards.Select((spec, k) =>
        {
            switch (spec.Kind)
            {
                case RewardKind.BertScore:
                    return services.SimilarityAsync(inputs.Responses, inputs.References, cancellation);
                case RewardKind.Rule:
                    var rule = new RuleReward(spec);
                    var outcomes = inputs.Responses.Select((r, i) => rule.Judge(r, inputs.Answers[i]
                        ?? throw new InvalidOperationException($"sample {i} has no verifiable answer for refalign.rewards[{k}] (rule)."))).ToList();
                    correct ??= [.. outcomes.Select(o => o.Correct)];
                    return Task.FromResult<IReadOnlyList<double>>([.. outcomes.Select(o => o.Score)]);
                default:
                    return services.RewardAsync(k, inputs, cancellation);
            }
        }).ToList();
        var perReward = (await Task.WhenAll(work)).Select(s => s.ToArray()).ToList();
        for (var k = 0; k < perReward.Count; k++)
            if (perReward[k].Length != inputs.Count)
                throw new InvalidOperationException($"refalign.rewards[{k}] returned {perReward[k].Length} scores for {inputs.Count} samples.");
        var totals = Enumerable.Range(0, inputs.Count).Select(i => RewardSpec.Total(rewards, [.. perReward.Select(s => s[i])])).ToArray();
        return new RewardScores(rewards, perReward, totals, correct);
    }
}
