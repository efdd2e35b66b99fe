using System.Diagnostics;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Compute.Training;

/// <summary>What the loop reports after each step.</summary>
public sealed record StepReport(int Step, int TotalSteps, long WeightVersion, IReadOnlyDictionary<string, double> Metrics,
    IReadOnlyDictionary<string, double> PhaseSeconds, double TokensPerSecond);

/// <summary>
/// Receives a run's progress (progress bars, metrics files, grain state, gRPC watch streams). The async forms are what
/// the loop awaits, so an observer that must make a step durable (the run grain) holds the loop until it is.
/// </summary>
public interface IRunObserver
{
    void OnStep(StepReport report) { }
    void OnEval(int step, IReadOnlyDictionary<string, double> metrics) { }
    void OnCheckpoint(int step, string folder) { }

    /// <summary>Where the loop starts: <paramref name="step"/> steps done, from a checkpoint or a live learner.</summary>
    void OnResume(int step, long weightVersion, bool fromCheckpoint) { }

    /// <summary>
    /// <see cref="OnResume"/> with the live learner's <paramref name="recentlyApplied"/> step results (empty after a
    /// checkpoint restore), so an observer that never heard of a step the learner applied can report it.
    /// </summary>
    Task OnResumeAsync(int step, long weightVersion, bool fromCheckpoint, IReadOnlyList<StepResult> recentlyApplied)
    {
        OnResume(step, weightVersion, fromCheckpoint);
        return Task.CompletedTask;
    }

    Task OnStepAsync(StepReport report)
    {
        OnStep(report);
        return Task.CompletedTask;
    }

    Task OnCheckpointAsync(int step, string folder)
    {
        OnCheckpoint(step, folder);
        return Task.CompletedTask;
    }
}

/// <summary>
/// A run's loop, written once for every orchestration: pick the step's batch (a pure function of seed and step),
/// then for RefAlign sample → score → shape → learn, or for the preference losses reference → learn; evaluate and
/// checkpoint on schedule. SFT steps go data → learn. Every phase is an Activity with the run id, step and weight version.
/// </summary>
public sealed class TrainingRun(string runId, RunConfig config, TrainingData data, ITrainingServices services, IRunObserver? observer = null)
{
    public int TotalSteps { get; } = data.TotalSteps(config);

    /// <summary>Runs from the latest checkpoint (or step 0) to the end; returns the number of steps completed.</summary>
    public async Task<int> RunAsync(CancellationToken cancellation = default)
    {
        var restored = await services.RestoreLatestAsync(cancellation);
        var step = restored?.Step ?? 0;
        var version = restored is null ? 0L : Learner.WeightVersionOf(restored);
        var live = restored?.Extra.ContainsKey("live") == true;
        if (observer is not null) await observer.OnResumeAsync(step, version, restored is not null && !live, live ? services.RecentlyApplied : []);
        var lastCheckpoint = live ? -1 : step;
        var sinceCheckpoint = Stopwatch.StartNew();
        while (step < TotalSteps)
        {
            if (cancellation.IsCancellationRequested)
            {
                // Stopping keeps every finished step: checkpoint what was done since the last one, then stop.
                if (step > lastCheckpoint) await CheckpointAsync(step, version, CancellationToken.None);
                cancellation.ThrowIfCancellationRequested();
            }
            var result = await StepAsync(step, version, cancellation);
            version = result.WeightVersion;
            step++;
            if (config.EvalEvery > 0 && (step % config.EvalEvery == 0 || step == TotalSteps))
                observer?.OnEval(step, await EvaluateAsync(step, version, cancellation));
            // By steps, by time (bounding the replay after a learner loss), and at the end.
            if ((config.CheckpointEvery > 0 && step % config.CheckpointEvery == 0) || step == TotalSteps
                || (config.CheckpointEverySeconds > 0 && sinceCheckpoint.Elapsed.TotalSeconds >= config.CheckpointEverySeconds))
            {
                await CheckpointAsync(step, version, cancellation);
                lastCheckpoint = step;
                sinceCheckpoint.Restart();
            }
        }
        return step;
    }

    async Task CheckpointAsync(int step, long version, CancellationToken cancellation)
    {
        using var activity = Phase(TrainingTelemetry.Phases.Checkpoint, step, version);
        var manifest = new CheckpointManifest(step, (long)step * config.BatchSize, step / data.StepsPerEpoch(config.BatchSize), runId,
            new Dictionary<string, string>
            {
                ["weight_version"] = version.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["algorithm"] = config.Algorithm.ToString(),
            });
        var folder = await services.CheckpointAsync(manifest, cancellation);
        if (observer is not null) await observer.OnCheckpointAsync(step, folder);
    }

    /// <summary>One optimizer step; public so a grain can drive steps one at a time.</summary>
    public async Task<StepResult> StepAsync(int step, long version, CancellationToken cancellation = default)
    {
        using var stepActivity = TrainingTelemetry.StartPhase(TrainingTelemetry.Phases.Step, runId, step, version);
        var phases = new Dictionary<string, double>();
        var started = Stopwatch.GetTimestamp();
        var indices = data.BatchIndices(step, config.BatchSize, config.Seed, config.Data.Shuffle);
        StepResult result;
        double tokens;
        if (config.IsSft)
        {
            var rows = indices.Select(i => data.TrainSequences[i]).ToList();
            result = await Timed(phases, TrainingTelemetry.Phases.Learn, step, version, () => services.LearnSftAsync(step, rows, cancellation));
            tokens = rows.Sum(r => (double)r.Prompt.Length + r.Completion.Length);
        }
        else if (config.IsPreference)
        {
            var pairs = indices.Select(i => data.TrainPairs[i]).ToList();
            var refs = await Timed(phases, TrainingTelemetry.Phases.Reference, step, version, () => services.ReferenceAsync(pairs, config.IsSelfRefined, cancellation));
            var rows = pairs.Select((p, i) => new PreferenceRow(p, refs[i])).ToList();
            result = await Timed(phases, TrainingTelemetry.Phases.Learn, step, version, () => services.LearnPreferenceAsync(step, rows, cancellation));
            tokens = pairs.Sum(p => 2.0 * p.Prompt.Length + p.Chosen.Length + p.Rejected.Length);
        }
        else
        {
            var prompts = indices.Select(i => data.TrainPrompts[i]).ToList();
            var rollouts = await Timed(phases, TrainingTelemetry.Phases.Generate, step, version, () => services.GenerateAsync(step, prompts, cancellation));
            var (rows, rewardMetrics) = await ShapeAsync(prompts, rollouts, phases, step, version, cancellation);
            result = await Timed(phases, TrainingTelemetry.Phases.Learn, step, version, () => services.LearnRefAlignAsync(step, rows, cancellation));
            result = result with { Metrics = Merge(result.Metrics, rewardMetrics) };
            tokens = rollouts.Sum(r => r.Completion.Length) / Math.Max(phases[TrainingTelemetry.Phases.Generate], 1e-9);
        }
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        phases["step"] = seconds;
        var tokensPerSecond = config.IsPreference || config.IsSft ? tokens / seconds : tokens;
        Record(seconds, tokensPerSecond, phases, result.Metrics);
        if (observer is not null) await observer.OnStepAsync(new StepReport(step, TotalSteps, result.WeightVersion, result.Metrics, phases, tokensPerSecond));
        return result;
    }

    async Task<(List<RolloutRow> Rows, Dictionary<string, double> Metrics)> ShapeAsync(List<ReferencePrompt> prompts,
        IReadOnlyList<Rollout> rollouts, Dictionary<string, double> phases, int step, long version, CancellationToken cancellation)
    {
        var r = config.RefAlign;
        var parsed = rollouts.Select(x => r.Confidence ? ConfidenceParser.Parse(x.Text) : new ParsedConfidence(x.Text, 1.0, false)).ToList();
        var scores = await Timed(phases, TrainingTelemetry.Phases.Score, step, version, () => RewardScoring.ScoreAsync(r, services,
            Inputs(prompts, rollouts, [.. parsed.Select(p => p.Answer)]), cancellation));
        var shaped = RewardShaping.ShapeBatch([.. rollouts.Select(x => x.Position)], scores.Totals, [.. rollouts.Select(x => x.Completion.Length)],
            r.Confidence ? [.. parsed.Select(p => p.Confidence)] : null, [.. prompts.Select(p => p.Harmful)],
            new RewardShapingOptions
            {
                LengthConstant = r.LengthConstant, AdvantageClip = r.AdvantageClip ?? double.PositiveInfinity,
                HarmfulWeight = r.HarmfulWeight, CalibrationAlpha = r.CalibrationAlpha, Baseline = BaselineOf(config.Algorithm),
            });
        var rows = rollouts.Select((x, i) => new RolloutRow(x.PromptId, x.SampleIndex, prompts[x.Position].Prompt, x.Completion, shaped[i].Advantage,
            x.TokenLogProbs)).ToList();
        var rewards = shaped.Select(s => s.Reward).ToList();
        var mean = rewards.Average();
        var metrics = scores.Metrics();
        metrics["reward/mean"] = mean;
        metrics["reward/std"] = Math.Sqrt(rewards.Average(x => (x - mean) * (x - mean)));
        metrics["advantage/clip_fraction"] = shaped.Count(s => s.Clipped) / (double)shaped.Count;
        metrics["rollout/eos_fraction"] = rollouts.Count(x => x.Finished) / (double)rollouts.Count;
        if (r.Confidence) metrics["confidence/mean"] = parsed.Average(p => p.Confidence);
        return (rows, metrics);
    }

    /// <summary>The advantage estimator of each sampling algorithm (docs/algorithms.md §3, §7).</summary>
    public static AdvantageBaseline BaselineOf(Algorithm algorithm) => algorithm switch
    {
        Algorithm.Grpo => AdvantageBaseline.GroupNormalized,
        Algorithm.Rloo => AdvantageBaseline.LeaveOneOut,
        Algorithm.ReinforcePp => AdvantageBaseline.BatchWhitened,
        _ => AdvantageBaseline.GroupMean,
    };

    /// <summary>Held-out metrics: preference accuracies and margins, or RefAlign's mean reward on eval prompts.</summary>
    public async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(int step, long version, CancellationToken cancellation = default)
    {
        using var activity = Phase(TrainingTelemetry.Phases.Eval, step, version);
        if (config.IsSft)
            return data.EvalSequences.Count == 0 ? new Dictionary<string, double>() : await services.EvaluateSftAsync(data.EvalSequences, cancellation);
        if (config.IsPreference)
        {
            if (data.EvalPairs.Count == 0) return new Dictionary<string, double>();
            var refs = await services.ReferenceAsync(data.EvalPairs, data.EvalPairs.All(p => p.PromptedPrompt is not null), cancellation);
            return await services.EvaluatePreferenceAsync([.. data.EvalPairs.Select((p, i) => new PreferenceRow(p, refs[i]))], cancellation);
        }
        if (data.EvalPrompts.Count == 0) return new Dictionary<string, double>();
        // Negative steps key evaluation's random streams apart from training's; the same eval step always samples alike.
        var rollouts = await services.GenerateAsync(-1 - step, data.EvalPrompts, cancellation);
        var scores = await RewardScoring.ScoreAsync(config.RefAlign, services,
            Inputs(data.EvalPrompts, rollouts, [.. rollouts.Select(x => config.RefAlign.Confidence ? ConfidenceParser.Parse(x.Text).Answer : x.Text)]), cancellation);
        var rewards = rollouts.Select((x, i) => RewardShaping.LengthFactor(config.RefAlign.LengthConstant, x.Completion.Length) * scores.Totals[i]).ToList();
        var metrics = scores.Metrics("eval/");
        metrics["eval/reward/mean"] = rewards.Average();
        metrics["eval/response_length/mean"] = rollouts.Average(x => x.Completion.Length);
        return metrics;
    }

    /// <summary>What the rewards score for <paramref name="rollouts"/> of <paramref name="prompts"/> (responses as given).</summary>
    public static RewardInputs Inputs(IReadOnlyList<ReferencePrompt> prompts, IReadOnlyList<Rollout> rollouts, IReadOnlyList<string> responses) =>
        new([.. rollouts.Select(x => prompts[x.Position].PromptText)], responses, [.. rollouts.Select(x => prompts[x.Position].Reference)],
            [.. rollouts.Select(x => prompts[x.Position].Answer)]);

    async Task<T> Timed<T>(Dictionary<string, double> phases, string name, int step, long version, Func<Task<T>> work)
    {
        using var activity = Phase(name, step, version);
        var t = Stopwatch.GetTimestamp();
        var result = await work();
        phases[name] = Stopwatch.GetElapsedTime(t).TotalSeconds;
        return result;
    }

    Activity? Phase(string name, int step, long version) => TrainingTelemetry.StartPhase(name, runId, step, version);

    void Record(double seconds, double tokensPerSecond, Dictionary<string, double> phases, IReadOnlyDictionary<string, double> metrics)
    {
        var run = new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, runId);
        TrainingTelemetry.StepDuration.Record(seconds, run);
        TrainingTelemetry.TokensPerSecond.Record(tokensPerSecond, run);
        foreach (var (phase, s) in phases)
            if (phase != TrainingTelemetry.Phases.Step)
                TrainingTelemetry.PhaseDuration.Record(s, run, new KeyValuePair<string, object?>(TrainingTelemetry.Tags.Phase, phase));
        if (metrics.TryGetValue("loss", out var loss)) TrainingTelemetry.Loss.Record(loss, run);
        if (metrics.TryGetValue("reward/mean", out var reward)) TrainingTelemetry.Reward.Record(reward, run);
    }

    static Dictionary<string, double> Merge(IReadOnlyDictionary<string, double> a, IReadOnlyDictionary<string, double> b)
    {
        var m = new Dictionary<string, double>(a);
        foreach (var (k, v) in b) m[k] = v;
        return m;
    }
}
