using RefAlign.Compute.Training;
using RefAlign.Contracts.Grains;

namespace RefAlign.Grains;

/// <summary>How grains read the run config they are handed (validated at StartRun; model paths are the silo's).</summary>
internal static class GrainCompute
{
    public static RunConfig Parse(string configJson) => RunConfig.Parse(configJson).Validate(requirePaths: false);

    /// <summary>
    /// The run's config, from its run grain (or, for an evaluation's model, from the evaluation): how a worker re-placed
    /// after a silo loss initializes itself.
    /// </summary>
    public static async Task<string> ConfigOfRun(IGrainFactory grains, string runId) =>
        EvaluationKeys.TryParse(runId, out var evaluation, out var model)
            ? await grains.GetGrain<IRunEvaluationGrain>(evaluation).ModelConfig(model)
            : (await grains.GetGrain<ITrainingRunGrain>(runId).GetSummary()).ConfigJson;

    /// <summary>The run id of a shard worker's key <c>run/shard</c>.</summary>
    public static string RunOfShard(string key) => key[..key.LastIndexOf('/')];
}
