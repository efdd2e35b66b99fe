using RefAlign.Compute.Training;

namespace RefAlign.Grains;

/// <summary>What every part of a run's grain-backed services shares: the run, its config and data, and the attempt's learner epoch.</summary>
public sealed record RunContext(string RunId, RunConfig Config, string ConfigJson, TrainingData Data, int TotalSteps, long LearnerEpoch)
{
    public int Shards => Config.Distributed.Shards;

    public bool Pipelined => Config.Distributed.Mode == DistributedMode.Pipelined;

    /// <summary>The run's shard workers (generators or reference scorers); an SFT run has none, its learner does all.</summary>
    public IReadOnlyList<string> ShardKeys => Config.IsSft ? [] : [.. Enumerable.Range(0, Shards).Select(s => $"{RunId}/{s}")];
}
