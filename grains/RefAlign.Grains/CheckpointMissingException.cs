namespace RefAlign.Grains;

/// <summary>A run that made progress cannot find the checkpoint it wrote: it fails rather than start over from step 0.</summary>
public sealed class CheckpointMissingException(string runId, int step, int checkpointStep, string? folder)
    : Exception(FormattableString.Invariant(
        $"run '{runId}' was at step {step} with a checkpoint of step {checkpointStep} ({folder}), but its learner found none that recent; refusing to start over from an earlier step. Is Silo:CheckpointRoot a folder every learner silo shares?"));
