using Microsoft.Extensions.Logging;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Training;

namespace RefAlign.Grains;

/// <summary>
/// A cluster run's logs in its output folder, as <c>refalign train</c> writes them: <c>metrics.jsonl</c> (appended) and
/// TensorBoard event files (one per activation of the run grain; TensorBoard reads them together). A log that cannot
/// be written is reported once and never stops the run: the event log and the grain state stay the record.
/// </summary>
internal sealed class RunFiles(JsonlRunLog jsonl, TensorBoardLog tensorboard, ILogger logger) : IRunObserver, IDisposable
{
    bool _failed;

    public static RunFiles? Open(string outputDir, ILogger logger)
    {
        try
        {
            Directory.CreateDirectory(outputDir);
            return new RunFiles(new JsonlRunLog(Path.Combine(outputDir, "metrics.jsonl")), new TensorBoardLog(outputDir), logger);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning(e, "cannot write metrics.jsonl or TensorBoard events under {Folder}; the run goes on without them", outputDir);
            return null;
        }
    }

    public void OnStep(StepReport report) => Guard(() => { jsonl.OnStep(report); tensorboard.OnStep(report); });

    public void OnEval(int step, IReadOnlyDictionary<string, double> metrics) => Guard(() => { jsonl.OnEval(step, metrics); tensorboard.OnEval(step, metrics); });

    public void OnCheckpoint(int step, string folder) => Guard(() => jsonl.OnCheckpoint(step, folder));

    void Guard(Action write)
    {
        if (_failed) return;
        try { write(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _failed = true;
            logger.LogWarning(e, "writing the run's metrics.jsonl or TensorBoard events failed; the run goes on without them");
        }
    }

    public void Dispose()
    {
        jsonl.Dispose();
        tensorboard.Dispose();
    }
}
