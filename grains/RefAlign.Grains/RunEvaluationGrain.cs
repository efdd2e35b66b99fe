using RefAlign.Compute.Files;
using Microsoft.Extensions.Logging;
using RefAlign.Compute.Evaluation;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// Evaluates a finished run's models through the cluster: per model, <see cref="GrainTrainingServices"/> under the
/// model's key (a learner holding its weights, the run's generator or reference shards, the scorer silos) and the
/// <see cref="Evaluator"/> of <c>refalign eval</c>, so generation and scoring fan out exactly as training does and the
/// numbers equal a local evaluation of the same folders. One model at a time; each model's grains are freed after it.
/// </summary>
public sealed class RunEvaluationGrain(ComputeExecutor executor, RoleDirectory roles, RunHostOptions host,
    ILogger<RunEvaluationGrain> logger) : Grain, IRunEvaluationGrain
{
    RunEvalRequest? _request;
    IReadOnlyList<string> _folders = [];
    IReadOnlyList<string> _labels = [];
    readonly List<string> _configs = [];
    RunEvalProgress _progress = new("", 0, 0, 0, 0);
    readonly CancellationTokenSource _cancel = new();
    IGrainTimer? _work;

    string Key => this.GetPrimaryKeyString();

    public Task Start(RunEvalRequest request, string runConfigJson, IReadOnlyList<string> folders, IReadOnlyList<string> labels)
    {
        if (_request is not null) return Task.CompletedTask;
        var run = GrainCompute.Parse(runConfigJson);
        var eval = Settings(request, folders);
        for (var m = 0; m < folders.Count; m++)
            _configs.Add(EvalModels.ConfigFor(run, eval, folders[m], WorkDir(run, m)).ToJson());
        (_request, _folders, _labels) = (request, folders, labels);
        _progress = new RunEvalProgress(labels[0], 0, labels.Count, 0, 0);
        // Interleaving timer: the evaluation awaits grain calls for minutes, polls must get through meanwhile.
        _work = this.RegisterGrainTimer(ct => RunAsync(run, eval), new GrainTimerCreationOptions(TimeSpan.Zero, Timeout.InfiniteTimeSpan) { Interleave = true, KeepAlive = true });
        return Task.CompletedTask;
    }

    string WorkDir(RunConfig run, int model) => Path.Combine(run.OutputDir, "eval", EvaluationKeys.Model(Key, model));

    static EvalConfig Settings(RunEvalRequest r, IReadOnlyList<string> folders) => new()
    {
        RunConfig = r.RunId, Models = folders, OutputDir = "", Examples = r.Examples, NumSamples = r.NumSamples,
        Seed = r.Seed, CorrectThreshold = r.CorrectThreshold, Bootstrap = r.Bootstrap,
    };

    public Task<RunEvalProgress> Poll() => Task.FromResult(_progress);

    public Task<string> ModelConfig(int model) =>
        model >= 0 && model < _configs.Count ? Task.FromResult(_configs[model]) : throw new RunNotFoundException(EvaluationKeys.Model(Key, model));

    public Task Cancel()
    {
        _cancel.Cancel();
        return Task.CompletedTask;
    }

    async Task RunAsync(RunConfig run, EvalConfig eval)
    {
        var cancellation = _cancel.Token;
        try
        {
            // Every held-out example the evaluation asks for, whatever the run evaluated during training.
            var data = await executor.RunAsync(() =>
                TrainingData.Load(run with { EvalExamples = eval.Examples ?? run.EvalExamples }, TextTokenizer.Load(run.Policy.Model)));
            var results = new List<ModelEvaluation>();
            for (var m = 0; m < _folders.Count; m++)
            {
                var (index, label) = (m, _labels[m]);
                var config = GrainCompute.Parse(_configs[m]);
                var key = EvaluationKeys.Model(Key, m);
                var services = new GrainTrainingServices(new RunContext(key, config, _configs[m], data, TotalSteps: 1, LearnerEpoch: 1), GrainFactory, roles,
                    host.Timings, note => logger.LogWarning("evaluation {Key}: {Note}", key, note));
                try
                {
                    await services.InitializeAsync(cancellation);
                    if (EvalModels.IsLoraCheckpoint(_folders[m])) await services.LoadCheckpointAsync(_folders[m]);
                    var progress = new Reporter(p => _progress = new RunEvalProgress(label, index, _folders.Count, p.Done, p.Total));
                    results.Add(await Evaluator.EvaluateAsync(label, _folders[m], config, data, services, eval, progress, cancellation));
                }
                finally
                {
                    await services.UnloadAsync();
                    Cleanup(config, key);
                }
            }
            var sideBySide = Evaluator.CompareToFirst(run, results, eval);
            _progress = _progress with { Result = new RunEvalResult([.. results.Select(ToContract)], [.. sideBySide.Select(ToContract)]) };
        }
        catch (Exception e)
        {
            logger.LogWarning(e, "evaluation {Key} failed", Key);
            _progress = _progress with { Error = e is OperationCanceledException ? "the evaluation was cancelled." : $"{e.GetType().Name}: {e.Message}" };
        }
        finally
        {
            _work?.Dispose();
            // The result waits a while for its poller, then the grain goes (an idle grain is collected).
        }
    }

    /// <summary>An evaluation leaves nothing behind: its learner's (empty) checkpoint folder and its work folder go.</summary>
    void Cleanup(RunConfig config, string key)
    {
        foreach (var folder in new[] { host.CheckpointFolder(key, config), config.OutputDir })
        {
            try
            {
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            }
            catch (IOException e)
            {
                logger.LogWarning(e, "evaluation {Key}: could not remove {Folder}", key, folder);
            }
        }
    }

    static RunModelEvaluation ToContract(ModelEvaluation e) => new(e.Model, e.Path, e.Metrics,
        [.. e.Samples.Select(s => new RunEvalSample(s.PromptId, s.Sample, s.Harmful, s.Answer, s.Confidence, s.F1, s.Correct, s.Reward, s.Length))],
        e.F1Interval?.Low, e.F1Interval?.High, e.Notes);

    static RunSideBySide ToContract(SideBySide s) =>
        new(s.ModelA, s.ModelB, s.WinRate, s.Interval.Low, s.Interval.High, s.Wins, s.Ties, s.Losses);

    sealed class Reporter(Action<(int Done, int Total)> report) : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) value) => report(value);
    }
}
