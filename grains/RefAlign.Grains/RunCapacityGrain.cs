using Orleans.Runtime;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// The run limits, checked and acted on in one turn of a single activation. Grains are not reentrant by default, so the
/// next request counts the run this one started. Calls go out to the registry, the run grains and the management grain
/// only; none call back.
/// </summary>
public sealed class RunCapacityGrain(RunHostOptions host, RoleDirectory roles, LearnerPlacementOptions learners) : Grain, IRunCapacityGrain
{
    /// <summary>A learner placed this long ago shows in the cluster's activations: counting it on its silo until then
    /// keeps two runs started at once from both taking the emptiest silo.</summary>
    static readonly TimeSpan PlacementMemory = TimeSpan.FromMinutes(1);

    readonly Dictionary<string, (SiloAddress Silo, DateTime At)> _placed = new(StringComparer.Ordinal);

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

    public async Task<SiloAddress?> LearnerSilo(string runId)
    {
        // The silos placement would choose from (accelerators first, as the learner's placement prefers them).
        var silos = roles.Active(SiloRoles.Learner);
        var accelerated = silos.Where(roles.IsAccelerator).ToList();
        if (learners.RequireAccelerator || accelerated.Count > 0) silos = accelerated;
        if (silos.Count == 0) return null;
        var now = DateTime.UtcNow;
        foreach (var old in _placed.Where(p => now - p.Value.At >= PlacementMemory).Select(p => p.Key).ToList()) _placed.Remove(old);
        var management = GrainFactory.GetGrain<IManagementGrain>(0);
        var others = (await RunListing.ListAsync(GrainFactory)).Where(r => r.RunId != runId && r.Status.IsRunning());
        var where = await Task.WhenAll(others.Select(async r =>
        {
            try { return await management.GetActivationAddress(GrainFactory.GetGrain<ILearnerGrain>(r.RunId)) ?? _placed.GetValueOrDefault(r.RunId).Silo; }
            catch (Exception e) when (ClusterFaults.IsTransient(e)) { return _placed.GetValueOrDefault(r.RunId).Silo; }
        }));
        var chosen = silos.MinBy(s => where.Count(w => s.Equals(w)))!;
        _placed[runId] = (chosen, now);
        return chosen;
    }

    ITrainingRunGrain Run(string runId) => GrainFactory.GetGrain<ITrainingRunGrain>(runId);

    /// <summary>Room for one more running run: in the cluster, and per learner silo.</summary>
    async Task CheckAsync()
    {
        var running = (await RunListing.ListAsync(GrainFactory)).Count(r => r.Status.IsRunning());
        var limits = host.Limits;
        if (running >= limits.MaxConcurrentRuns)
            throw new ResourceExhaustedException($"{running} runs are running, the cluster's limit (Limits:MaxConcurrentRuns); wait for one to end.");
        var learnerSilos = roles.Active(SiloRoles.Learner).Count;
        if (learnerSilos > 0 && running >= limits.MaxConcurrentRunsPerSilo * learnerSilos)
            throw new ResourceExhaustedException(
                $"{running} runs are running on {learnerSilos} learner silo(s), {limits.MaxConcurrentRunsPerSilo} per silo at most (Limits:MaxConcurrentRunsPerSilo).");
    }
}
