using RefAlign.Compute.Rewards;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Evaluation;

/// <summary>One sampled answer as evaluated: enough to recompute every metric of its model (ECE and AUROC included).</summary>
public sealed record EvalSample(string Model, int PromptId, int Sample, bool Harmful, string Answer, double? Confidence,
    double F1, bool Correct, double Reward, int Length);

/// <summary>A model's metrics, its samples, and the bootstrap interval of its mean BERTScore F1 (RefAlign data).</summary>
public sealed record ModelEvaluation(string Model, string Path, IReadOnlyDictionary<string, double> Metrics,
    IReadOnlyList<EvalSample> Samples, Interval? F1Interval, IReadOnlyList<string> Notes);

/// <summary>Model B against model A on the same prompts and sampling keys: per prompt, the higher mean F1 wins.</summary>
public sealed record SideBySide(string ModelA, string ModelB, double WinRate, Interval Interval, int Wins, int Ties, int Losses);

/// <summary>
/// Evaluates one model through <see cref="ITrainingServices"/>, the interface the training loop uses, so the local
/// evaluation and a cluster's run the same code: RefAlign data is sampled and scored with BERTScore against the
/// references (with the confidence variant's calibration), preference data gets the held-out preference metrics, SFT data
/// the held-out loss and perplexity.
/// </summary>
public static class Evaluator
{
    /// <summary>Sampling-stream key of evaluation (training uses steps ≥ 0, periodic eval −1 − step).</summary>
    public const int EvalStep = -1_000_000;

    /// <summary>Prompts generated per call: the progress granularity.</summary>
    const int Chunk = 4;

    public static async Task<ModelEvaluation> EvaluateAsync(string label, string path, RunConfig run, TrainingData data, ITrainingServices services,
        EvalConfig eval, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellation = default)
    {
        if (run.IsSft)
        {
            var rows = data.EvalSequences.Take(eval.Examples ?? int.MaxValue).ToList();
            if (rows.Count == 0) throw new InvalidRunConfigException("data.eval_fraction", $"{run.Data.Path}: the run's held-out split is empty.");
            var sft = await services.EvaluateSftAsync(rows, cancellation);
            progress?.Report((rows.Count, rows.Count));
            return new ModelEvaluation(label, path, new Dictionary<string, double>(sft) { ["examples"] = rows.Count }, [], null, []);
        }
        if (run.IsPreference)
        {
            var pairs = data.EvalPairs.Take(eval.Examples ?? int.MaxValue).ToList();
            if (pairs.Count == 0) throw new InvalidRunConfigException("data.eval_fraction", $"{run.Data.Path}: the run's held-out split is empty.");
            var refs = await services.ReferenceAsync(pairs, pairs.All(p => p.PromptedPrompt is not null), cancellation);
            var metrics = await services.EvaluatePreferenceAsync([.. pairs.Select((p, i) => new PreferenceRow(p, refs[i]))], cancellation);
            progress?.Report((pairs.Count, pairs.Count));
            return new ModelEvaluation(label, path, new Dictionary<string, double>(metrics) { ["examples"] = pairs.Count }, [], null, []);
        }

        var prompts = data.EvalPrompts.Take(eval.Examples ?? int.MaxValue).ToList();
        if (prompts.Count == 0) throw new InvalidRunConfigException("data.eval_fraction", $"{run.Data.Path}: the run's held-out split is empty.");
        var samples = new List<EvalSample>();
        for (var start = 0; start < prompts.Count; start += Chunk)
        {
            var chunk = prompts.Skip(start).Take(Chunk).ToList();
            var rollouts = await services.GenerateAsync(EvalStep, chunk, cancellation);
            var parsed = rollouts.Select(r => run.RefAlign.Confidence ? ConfidenceParser.Parse(r.Text) : null).ToList();
            var answers = rollouts.Select((r, i) => parsed[i]?.Answer ?? r.Text).ToList();
            var scores = await RewardScoring.ScoreAsync(run.RefAlign, services, TrainingRun.Inputs(chunk, rollouts, answers), cancellation);
            // F1 is BERTScore's when the run scores with it, else the run's total reward; a rule decides correctness when there is one.
            var f1 = scores.BertScore ?? scores.Totals;
            samples.AddRange(rollouts.Select((r, i) => new EvalSample(label, r.PromptId, r.SampleIndex, chunk[r.Position].Harmful,
                answers[i], parsed[i]?.Confidence, f1[i], scores.Correct?[i] ?? f1[i] >= eval.CorrectThreshold,
                RewardShaping.LengthFactor(run.RefAlign.LengthConstant, r.Completion.Length) * scores.Totals[i], r.Completion.Length)));
            progress?.Report((Math.Min(start + Chunk, prompts.Count), prompts.Count));
        }
        var result = Summarize(label, path, samples, eval);
        if (run.RefAlign.UsesBertScore) return result;
        // Without BERTScore the F1 column holds the reward: report it as such, with no F1 interval.
        var withoutF1 = new Dictionary<string, double>(result.Metrics);
        withoutF1.Remove("bertscore/f1");
        return result with { Metrics = withoutF1, F1Interval = null };
    }

    /// <summary>The metrics of a model's samples; public so a report can be checked against samples.jsonl alone.</summary>
    public static ModelEvaluation Summarize(string label, string path, IReadOnlyList<EvalSample> samples, EvalConfig eval)
    {
        var notes = new List<string>();
        var perPrompt = PerPromptF1(samples);
        var metrics = new Dictionary<string, double>
        {
            ["examples"] = perPrompt.Count,
            ["samples"] = samples.Count,
            ["bertscore/f1"] = samples.Average(s => s.F1),
            ["reward/mean"] = samples.Average(s => s.Reward),
            ["response_length/mean"] = samples.Average(s => s.Length),
            ["accuracy"] = samples.Count(s => s.Correct) / (double)samples.Count,
        };
        var harmful = samples.Where(s => s.Harmful).ToList();
        if (harmful.Count > 0) metrics["reward/harmful/mean"] = harmful.Average(s => s.Reward);
        if (samples.All(s => s.Confidence is not null))
        {
            var confidence = samples.Select(s => s.Confidence!.Value).ToList();
            var correct = samples.Select(s => s.Correct).ToList();
            metrics["confidence/mean"] = confidence.Average();
            metrics["calibration/ece"] = CalibrationMetrics.ExpectedCalibrationError(confidence, correct, bins: 10);
            if (correct.Distinct().Count() == 2) metrics["calibration/auroc"] = CalibrationMetrics.Auroc(confidence, correct);
            else notes.Add($"AUROC is undefined: every answer is {(correct[0] ? "correct" : "incorrect")} at correct_threshold {eval.CorrectThreshold}.");
        }
        var interval = EvalStatistics.BootstrapMean([.. perPrompt.Values], eval.Bootstrap, eval.Seed);
        return new ModelEvaluation(label, path, metrics, samples, interval, notes);
    }

    /// <summary>Win rate of <paramref name="b"/> over <paramref name="a"/> (ties count ½) with its bootstrap interval over prompts.</summary>
    public static SideBySide Compare(ModelEvaluation a, ModelEvaluation b, EvalConfig eval)
    {
        var fa = PerPromptF1(a.Samples);
        var fb = PerPromptF1(b.Samples);
        var ids = fa.Keys.Intersect(fb.Keys).Order().ToList();
        if (ids.Count == 0) throw new ArgumentException($"{a.Model} and {b.Model} share no prompt.");
        var outcomes = ids.Select(id => fb[id] > fa[id] ? 1.0 : fb[id] < fa[id] ? 0.0 : 0.5).ToList();
        return new SideBySide(a.Model, b.Model, outcomes.Average(), EvalStatistics.BootstrapMean(outcomes, eval.Bootstrap, eval.Seed),
            outcomes.Count(o => o == 1), outcomes.Count(o => o == 0.5), outcomes.Count(o => o == 0));
    }

    /// <summary>Every later model against the first, for sampled (RefAlign) data; none for preference or SFT data.</summary>
    public static IReadOnlyList<SideBySide> CompareToFirst(RunConfig run, IReadOnlyList<ModelEvaluation> results, EvalConfig eval) =>
        !run.IsRollout ? [] : [.. results.Skip(1).Select(b => Compare(results[0], b, eval))];

    static Dictionary<int, double> PerPromptF1(IReadOnlyList<EvalSample> samples) =>
        samples.GroupBy(s => s.PromptId).ToDictionary(g => g.Key, g => g.Average(s => s.F1));
}
