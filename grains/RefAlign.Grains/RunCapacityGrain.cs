using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// The run limits, checked and acted on in one turn of a single activation. Grains are not reentrant by default, so the
/// next request counts the run this one started. Calls go out to the registry and run grains only; none call back.
/// </summary>
public sealed class RunCapacityGrain(RunHostOptions host, RoleDirectory roles) : Grain, IRunCapacityGrain
{
    public async Task Start(string runId, string configJson)
    {
        await CheckAsync();
        await GrainFactory.GetGrain<IRunRegistryGrain>(0).Add(runId);
        await Run(runId).Start(configJson);
    }

    public async Task Resume(string runId)
    {
        var run = Run(runId);
        if (!(await run.GetSummary()).Status.IsFinal()) return;
        await CheckAsync();
        await run.Resume();
    }

    ITrainingRunGrain Run(string runId) => GrainFactory.GetGrain<ITrainingRunGrain>(runId);

    /// <summary>Room for one more running run: in the cluster, and per learner silo.</summary>
    async Task CheckAsync()
    {
        var running = (await RunListing.ListAsync(GrainFactory)).Count(r => r.Status is RunStatus.Running or RunStatus.Stopping);
        var limits = host.Limits;
        if (running >= limits.MaxConcurrentRuns)
            throw new ResourceExhaustedException($"{running} runs are running, the cluster's limit (Limits:MaxConcurrentRuns); wait for one to end.");
        var learnerSilos = roles.Active(SiloRoles.Learner).Count;
        if (learnerSilos > 0 && running >= limits.MaxConcurrentRunsPerSilo * learnerSilos)
            throw new ResourceExhaustedException(
                $"{running} runs are running on {learnerSilos} learner silo(s), {limits.MaxConcurrentRunsPerSilo} per silo at most (Limits:MaxConcurrentRunsPerSilo).");
    }
}
