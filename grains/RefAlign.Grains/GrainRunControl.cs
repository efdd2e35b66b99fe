using System.Runtime.CompilerServices;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;
using RefAlign.Compute.Training;

namespace RefAlign.Grains;

/// <summary>
/// <see cref="IRunControl"/> over grains, hosted in the silo behind the gRPC service. Configs are validated here, before
/// any grain is involved, so a bad field comes back as <see cref="InvalidRunConfigException"/> with its path.
/// </summary>
public sealed class GrainRunControl(IGrainFactory grains, ISiloMetadataCache metadata, RunHostOptions host, RoleDirectory roles) : IRunControl
{
    /// <summary>A watcher renews its subscription this often; a renewal also re-reads the log, so nothing is missed
    /// if a pushed event was lost or the run grain moved to another silo.</summary>
    static readonly TimeSpan WatchRenewal = TimeSpan.FromSeconds(10);

    public async Task<string> StartRunAsync(string configJson, CancellationToken cancellation = default)
    {
        // Limits and roots first: nothing a remote caller sends reaches a grain before it passed them.
        var chained = await ChainedRunsAsync(configJson);
        // Every run writes in a folder of its own: never inside another run's.
        var runFolders = (await ListRunsAsync(cancellation)).Select(r => OutputDirOf(r.ConfigJson)).OfType<string>().ToList();
        var config = new RunAdmission(host).Admit(configJson, (id, field) => chained[id], runFolders);
        CheckMemory(config);
        var runId = $"{config.Name}-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..6]}";
        // Each run writes under its own folder, so runs sharing a config never share checkpoints or caches.
        var effective = config with { OutputDir = Path.Combine(config.OutputDir, runId) };
        await grains.GetGrain<IRunCapacityGrain>(0).Start(runId, effective.ToJson());
        return runId;
    }

    ITrainingRunGrain Run(string runId) => grains.GetGrain<ITrainingRunGrain>(runId);

    static string? OutputDirOf(string configJson)
    {
        try { return RunConfig.Parse(configJson, "config").OutputDir; }
        catch (InvalidRunConfigException) { return null; }
    }

    /// <summary>
    /// The final checkpoints of the runs a config chains from (<c>"model": "run:&lt;id&gt;"</c>), by id: each must be a run
    /// of this cluster that completed. A config that does not parse is left to the admission to report.
    /// </summary>
    async Task<Dictionary<string, string>> ChainedRunsAsync(string configJson)
    {
        var found = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!configJson.Contains(ModelReferences.RunPrefix, StringComparison.Ordinal)) return found;
        RunConfig parsed;
        try { parsed = RunConfig.Parse(configJson, "config_json"); }
        catch (InvalidRunConfigException) { return found; }
        foreach (var (value, field) in new[] { (parsed.Policy.Model, "policy.model"), (parsed.Policy.ReferenceModel, "policy.reference_model") })
        {
            if (value is null || !ModelReferences.IsRun(value, out var id) || found.ContainsKey(id)) continue;
            if (!(await grains.GetGrain<IRunRegistryGrain>(0).List()).Contains(id))
                throw new InvalidRunConfigException(field, $"field '{field}' names run '{id}', which this cluster does not know.");
            RunSummary run;
            // Registered a moment before its grain takes its config (a start in progress): known, but not a stage yet.
            try { run = await Run(id).GetSummary(); }
            catch (RunNotFoundException) { throw new InvalidRunConfigException(field, $"field '{field}' names run '{id}', which has not started yet; a stage chains from a completed run's final checkpoint."); }
            if (run.Status != RunStatus.Completed || run.LatestCheckpoint is null)
                throw new InvalidRunConfigException(field,
                    $"field '{field}' names run '{id}', which is {run.Status.ToString().ToLowerInvariant()}; a stage chains from a completed run's final checkpoint.");
            found[id] = run.LatestCheckpoint;
        }
        return found;
    }

    async Task<ITrainingRunGrain> Known(string runId)
    {
        if (string.IsNullOrWhiteSpace(runId) || !(await grains.GetGrain<IRunRegistryGrain>(0).List()).Contains(runId))
            throw new RunNotFoundException(runId);
        return Run(runId);
    }

    public async Task<RunSummary> GetRunAsync(string runId, CancellationToken cancellation = default) =>
        await (await Known(runId)).GetSummary();

    public async Task StopRunAsync(string runId, CancellationToken cancellation = default) => await (await Known(runId)).Stop();

    public async Task ResumeRunAsync(string runId, CancellationToken cancellation = default)
    {
        await Known(runId);
        await grains.GetGrain<IRunCapacityGrain>(0).Resume(runId);
    }

    /// <summary>The run's learner must fit on some learner silo (as far as the silos told their memory).</summary>
    void CheckMemory(RunConfig config)
    {
        var need = RunAdmission.LearnerBytes(config);
        var largest = roles.Active(SiloRoles.Learner).Select(roles.MemoryOf).DefaultIfEmpty(0).Max();
        if (largest > 0 && need > largest)
            throw new ResourceExhaustedException(FormattableString.Invariant(
                $"the run's learner needs about {need / 1e9:F1} GB (weights, gradients, optimizer state, one micro-batch's activations); the largest learner silo has {largest / 1e9:F1} GB. Lower micro_batch_size or data.max_length, or use LoRA."));
    }

    public Task<IReadOnlyList<RunSummary>> ListRunsAsync(CancellationToken cancellation = default) => RunListing.ListAsync(grains);

    public async IAsyncEnumerable<RunEvent> WatchRunAsync(string runId, long afterSequence,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var run = await Known(runId);
        var channel = new RunEventChannel();
        var observer = grains.CreateObjectReference<IRunEventObserver>(channel);
        try
        {
            var last = afterSequence;
            await run.Subscribe(observer);
            while (true)
            {
                // Catch up from the log: the backlog, or whatever a gap in the pushed events left out.
                IReadOnlyList<RunEvent> backlog;
                do
                {
                    backlog = await run.GetEvents(last, 500);
                    foreach (var e in backlog)
                    {
                        last = e.Sequence;
                        yield return e;
                    }
                } while (backlog.Count == 500);
                if ((await run.GetSummary()).Status.IsFinal() && (await run.GetEvents(last, 1)).Count == 0) yield break;

                // Then follow the pushed events, in sequence order, while they keep coming.
                while (await channel.NextAsync(last, WatchRenewal, cancellation) is { } pushed)
                {
                    last = pushed.Sequence;
                    yield return pushed;
                    if (pushed.Status.IsFinal() && pushed.Kind == RunEventKind.Status) break;
                }
                await run.Subscribe(observer);
            }
        }
        finally
        {
            grains.DeleteObjectReference<IRunEventObserver>(observer);
        }
    }

    public async IAsyncEnumerable<RunEvalProgress> EvaluateRunAsync(RunEvalRequest request,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var run = await Known(request.RunId);
        RunEvaluationRequests.Validate(request);
        var summary = await run.GetSummary();
        if (!summary.Status.IsFinal())
            throw new InvalidOperationException($"run '{request.RunId}' is {summary.Status.ToString().ToLowerInvariant()}; evaluate it once it has stopped, completed or failed.");
        var config = GrainCompute.Parse(summary.ConfigJson);
        var (folders, labels) = RunEvaluationRequests.Resolve(request, summary, config, host);
        var evaluation = grains.GetGrain<IRunEvaluationGrain>(EvaluationKeys.New(request.RunId));
        await evaluation.Start(request, summary.ConfigJson, folders, labels);
        var finished = false;
        try
        {
            RunEvalProgress? last = null;
            while (true)
            {
                var progress = await evaluation.Poll();
                if (progress.Error is { } error) throw new InvalidOperationException($"the evaluation of run '{request.RunId}' failed: {error}");
                finished = progress.Finished;
                if (progress != last) yield return last = progress;
                if (finished) yield break;
                await Task.Delay(EvaluationPoll, cancellation);
            }
        }
        finally
        {
            // A caller that went away takes its evaluation with it.
            if (!finished)
            {
                try { await evaluation.Cancel(); }
                catch (Exception e) when (ClusterFaults.IsTransient(e)) { }
            }
        }
    }

    static readonly TimeSpan EvaluationPoll = TimeSpan.FromMilliseconds(500);

    public async Task<ClusterInfo> GetClusterAsync(CancellationToken cancellation = default)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var hosts = await management.GetDetailedHosts(onlyActive: true);
        var silos = new List<SiloInfo>();
        foreach (var h in hosts)
        {
            // A silo that just died is still listed until membership says so: it shows, without a grain count.
            int activations;
            try { activations = (await management.GetRuntimeStatistics([h.SiloAddress]))[0].ActivationCount; }
            catch (Exception e) when (ClusterFaults.IsTransient(e)) { activations = -1; }
            var meta = metadata.GetSiloMetadata(h.SiloAddress).Metadata;
            silos.Add(new SiloInfo(h.SiloAddress.ToString(), h.SiloName, SiloMetadataKeys.ParseRoles(meta.GetValueOrDefault(SiloMetadataKeys.Roles)),
                meta.GetValueOrDefault(SiloMetadataKeys.Device) ?? "cpu", h.Status.ToString(), activations, meta.GetValueOrDefault(SiloMetadataKeys.Libtorch) ?? ""));
        }
        var placements = new List<PlacementInfo>();
        foreach (var summary in await ListRunsAsync(cancellation))
        {
            if (!summary.Status.IsRunning()) continue;
            var run = Run(summary.RunId);
            // Only grains that are active: asking an inactive one anything would place it. One on a silo that is going
            // away is left out rather than failing the whole view.
            async Task Add(string kind, string key, IAddressable grain, Func<Task<long>>? version = null, Func<Task<string>>? locate = null)
            {
                SiloAddress? where;
                try { where = await management.GetActivationAddress(grain); }
                catch (Exception e) when (ClusterFaults.IsTransient(e)) { return; }
                if (where is null) return;
                // The lookup reads this silo's directory cache, stale after a move until a call reaches the grain there.
                if (locate is not null)
                    try { where = SiloAddress.FromParsableString(await locate()); }
                    catch (Exception e) when (ClusterFaults.IsTransient(e)) { }
                // A grain that is there but cannot say its version now (busy past the call's timeout, restoring) is
                // still listed where it is, with version -1: an operator must not see a live learner vanish.
                var v = -1L;
                if (version is not null)
                    try { v = await version(); }
                    catch (Exception e) when (ClusterFaults.IsTransient(e) || e is LearnerNotReadyException) { }
                placements.Add(new PlacementInfo(kind, key, summary.RunId, where.ToString(), v));
            }
            await Add("run", summary.RunId, run);
            var learner = grains.GetGrain<ILearnerGrain>(summary.RunId);
            await Add(SiloRoles.Learner, summary.RunId, learner, () => learner.WeightVersion());
            IReadOnlyList<RunWorker> workers;
            try { workers = await run.Workers(); }
            catch (Exception e) when (ClusterFaults.IsTransient(e)) { continue; }
            foreach (var worker in workers)
            {
                if (worker.Kind == SiloRoles.Generator)
                {
                    var generator = grains.GetGrain<IRolloutGeneratorGrain>(worker.GrainKey);
                    await Add(worker.Kind, worker.GrainKey, generator, () => generator.WeightVersion());
                }
                else
                {
                    var scorer = grains.GetGrain<IReferenceScorerGrain>(worker.GrainKey);
                    await Add(worker.Kind, worker.GrainKey, scorer, locate: scorer.Silo);
                }
            }
        }
        var generators = placements.Where(p => p.Kind == SiloRoles.Generator).Select(p => new GeneratorInfo(p.GrainKey, p.RunId, p.WeightVersion, p.Silo));
        return new ClusterInfo(silos, [.. generators], placements);
    }
}
