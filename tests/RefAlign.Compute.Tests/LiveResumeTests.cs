using System.Globalization;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// A loop that restarts over a live learner (the run grain's silo was lost, the learner's was not) hears of the steps
/// the learner applied, with their results, so an observer that never got the last reply can still report it.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class LiveResumeTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-live-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>The local services, except that a restore finds the learner live, as a cluster's learner grain does.</summary>
    sealed class LiveLearner(LocalTrainingServices inner) : ITrainingServices
    {
        public Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken c) => inner.GenerateAsync(step, prompts, c);
        public Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> a, IReadOnlyList<string> b, CancellationToken c) => inner.SimilarityAsync(a, b, c);
        public Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken c) => inner.ReferenceAsync(pairs, prompted, c);
        public Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken c) => inner.LearnRefAlignAsync(step, rows, c);
        public Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken c) => inner.LearnPreferenceAsync(step, rows, c);
        public Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken c) => inner.EvaluatePreferenceAsync(rows, c);
        public Task<StepResult> LearnSftAsync(int step, IReadOnlyList<SftSequence> rows, CancellationToken c) => inner.LearnSftAsync(step, rows, c);
        public Task<IReadOnlyDictionary<string, double>> EvaluateSftAsync(IReadOnlyList<SftSequence> rows, CancellationToken c) => inner.EvaluateSftAsync(rows, c);
        public Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken c) => inner.CheckpointAsync(manifest, c);

        public Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken c) => Task.FromResult<CheckpointManifest?>(
            new CheckpointManifest(inner.Learner.Step, 0, 0, "live", new Dictionary<string, string>
            {
                ["live"] = "true", ["weight_version"] = inner.Learner.WeightVersion.ToString(CultureInfo.InvariantCulture),
            }));

        public IReadOnlyList<StepResult> RecentlyApplied => inner.Learner.RecentlyApplied;
    }

    sealed class Recorder : IRunObserver
    {
        public List<StepReport> Steps { get; } = [];
        public (int Step, bool FromCheckpoint, IReadOnlyList<StepResult> Applied)? Resumed { get; private set; }

        public void OnStep(StepReport report) => Steps.Add(report);

        public Task OnResumeAsync(int step, long weightVersion, bool fromCheckpoint, IReadOnlyList<StepResult> recentlyApplied)
        {
            Resumed = (step, fromCheckpoint, recentlyApplied);
            return Task.CompletedTask;
        }
    }

    [Fact]
    public async Task A_restart_over_a_live_learner_hands_the_observer_the_results_of_the_steps_it_applied()
    {
        var model = Path.Combine(_root, "policy");
        ModelPresets.Initialize(model, "tiny", "llama", seed: 1);
        var data = Path.Combine(_root, "data");
        DemoData.WriteTo(data);
        RunConfig Config(int steps) => new RunConfig
        {
            Name = "live", Algorithm = Algorithm.Dpo, Seed = 3, OutputDir = Path.Combine(_root, "run"),
            Policy = new PolicySection { Model = model },
            Data = new DataSection { Path = Path.Combine(data, DemoData.PreferencesFileName), MaxLength = 48, MaxPromptLength = 24 },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-3, WarmupSteps = 0 },
            BatchSize = 4, MicroBatchSize = 4, MaxSteps = steps, EvalEvery = 0, CheckpointEvery = 0,
        }.Validate();
        var tok = TextTokenizer.Load(model);
        var trainingData = TrainingData.Load(Config(5), tok);
        using var local = new LocalTrainingServices(Config(5), tok, trainingData);
        var services = new LiveLearner(local);

        // The first loop applies three steps; its observer (the lost grain) reported them all.
        var first = new Recorder();
        Assert.Equal(3, await new TrainingRun("live", Config(3), trainingData, services, first).RunAsync());

        // The next loop finds the learner live at step 3, learns which steps it applied and with which results.
        var second = new Recorder();
        Assert.Equal(5, await new TrainingRun("live", Config(5), trainingData, services, second).RunAsync());
        var (step, fromCheckpoint, applied) = second.Resumed!.Value;
        Assert.Equal(3, step);
        Assert.False(fromCheckpoint);
        Assert.Equal([0, 1, 2], applied.Take(3).Select(r => r.Step));
        Assert.Equal(first.Steps[2].Metrics["loss"], applied[2].Metrics["loss"]);
        Assert.Equal(first.Steps[2].WeightVersion, applied[2].WeightVersion);
        Assert.Equal([3, 4], second.Steps.Select(s => s.Step));
    }
}
