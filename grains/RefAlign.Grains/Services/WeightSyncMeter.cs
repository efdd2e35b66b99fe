using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Messages;

namespace RefAlign.Grains;

/// <summary>
/// The learner's weight version as the run last heard it, and what the generators' weight syncs cost since the last
/// step: bytes, the slowest shard's seconds (shards sync in parallel), and how many versions behind each sampled.
/// </summary>
public sealed class WeightSyncMeter(string runId)
{
    long _bytes;
    double _seconds;

    /// <summary>The learner's current weight version (the last step's, or the restored one).</summary>
    public long Version { get; set; }

    public void Record(GenerateReply reply)
    {
        _bytes += reply.SyncBytes;
        _seconds = Math.Max(_seconds, reply.SyncSeconds);
        TrainingTelemetry.Staleness.Record(Math.Max(0, Version - reply.WeightVersion), new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, runId));
    }

    /// <summary>Notes the step's new version and attaches the transfer since the last step to its metrics.</summary>
    public StepResult Track(StepResult r)
    {
        Version = r.WeightVersion;
        if (_bytes == 0) return r;
        var metrics = new Dictionary<string, double>(r.Metrics) { ["weight_sync/bytes"] = _bytes, ["weight_sync/seconds"] = _seconds };
        (_bytes, _seconds) = (0, 0);
        return r with { Metrics = metrics };
    }
}
