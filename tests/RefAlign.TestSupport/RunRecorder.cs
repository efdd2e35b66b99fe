using RefAlign.Compute.Training;

namespace RefAlign.TestSupport;

/// <summary>Collects what a <see cref="TrainingRun"/> reports: steps, evaluations and checkpoints.</summary>
public sealed class RunRecorder(Action<int, string>? onCheckpoint = null) : IRunObserver
{
    public List<StepReport> Steps { get; } = [];

    public List<IReadOnlyDictionary<string, double>> Evals { get; } = [];

    public List<(int Step, string Folder)> Checkpoints { get; } = [];

    public void OnStep(StepReport report) => Steps.Add(report);

    public void OnEval(int step, IReadOnlyDictionary<string, double> metrics) => Evals.Add(metrics);

    public void OnCheckpoint(int step, string folder)
    {
        Checkpoints.Add((step, folder));
        onCheckpoint?.Invoke(step, folder);
    }

    /// <summary>Runs <paramref name="config"/> in this process, as <c>refalign train</c> does.</summary>
    public static RunRecorder RunLocally(RunConfig config)
    {
        var tok = RefAlign.Compute.Tokenization.TextTokenizer.Load(config.Policy.Model);
        var data = TrainingData.Load(config, tok);
        using var services = new LocalTrainingServices(config, tok, data);
        var recorder = new RunRecorder();
        new TrainingRun(config.Name, config, data, services, recorder).RunAsync().GetAwaiter().GetResult();
        return recorder;
    }
}
