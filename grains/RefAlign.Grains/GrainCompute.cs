using RefAlign.Compute.Training;
using Orleans.Runtime.Placement;
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

    /// <summary>
    /// Live-migrates <paramref name="grain"/> to <paramref name="silo"/> once it is idle. A plain deactivation is not
    /// enough to move a shard: a caller whose directory cache still names the old silo sends its next request there,
    /// and that silo re-creates the activation locally, without asking placement (seen under load: the shard never left).
    /// </summary>
    public static Task MigrateTo(Grain grain, SiloAddress silo)
    {
        RequestContext.Set(IPlacementDirector.PlacementHintKey, silo);
        try { grain.MigrateOnIdle(); }
        finally { RequestContext.Remove(IPlacementDirector.PlacementHintKey); }
        return Task.CompletedTask;
    }

    /// <summary>The run id of a shard worker's key <c>run/shard</c>.</summary>
    public static string RunOfShard(string key) => key[..key.LastIndexOf('/')];
}
