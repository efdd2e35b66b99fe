using RefAlign.Compute.Rewards;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// <see cref="ITrainingServices"/> over grains, one part per responsibility: <see cref="WorkerCalls"/> (placement with
/// retry and migration), <see cref="ShardDispatch"/> (the step's fan-out), <see cref="WeightSyncMeter"/> (the learner's
/// version and the generators' syncs) and <see cref="RefinementReplica"/> (Sr-*'s prompted pass elsewhere). The learner
/// owns steps, checkpoints and weights; a call to it that meets its lost silo names that silo. Every grain call ends
/// when <paramref name="attempt"/> is cancelled (the run's stall watch gave up on this attempt), whether or not its
/// reply ever comes.
/// </summary>
public sealed class GrainTrainingServices(RunContext run, IGrainFactory grains, RoleDirectory roles, RunTimings timings,
    Action<string>? note = null, CancellationToken attempt = default) : ITrainingServices
{
    readonly WorkerCalls _workers = new(roles, timings, note, attempt);
    readonly WeightSyncMeter _weights = new(run.RunId);
    readonly RefinementReplica _refinement = new(run, grains, roles, timings, note);
    ShardDispatch? _dispatch;
    string? _learnerSilo;

    ShardDispatch Dispatch => _dispatch ??= new ShardDispatch(run, grains, _workers, _weights);

    ILearnerGrain Learner => grains.GetGrain<ILearnerGrain>(run.RunId);

    public IReadOnlyList<string> ShardKeys => run.ShardKeys;

    /// <summary>Loads the model on the learner (handing it this attempt's epoch) and on every shard worker, in parallel.</summary>
    public async Task InitializeAsync(CancellationToken cancellation = default)
    {
        var stepsPerEpoch = run.Data.StepsPerEpoch(run.Config.BatchSize);
        var hint = await LearnerSiloAsync();
        var learner = WorkerCalls.Hinted(hint, () => Learner.Initialize(run.ConfigJson, run.TotalSteps, stepsPerEpoch, run.LearnerEpoch));
        var role = run.Config.IsPreference ? SiloRoles.Reference : SiloRoles.Generator;
        var work = ShardKeys.Select((key, shard) => _workers.SendAsync(role, shard, key, _ => run.Config.IsPreference
            ? grains.GetGrain<IReferenceScorerGrain>(key).Initialize(run.ConfigJson)
            : grains.GetGrain<IRolloutGeneratorGrain>(key).Initialize(run.ConfigJson), cancellation)).ToList();
        _learnerSilo = (await LearnerCall(() => learner)).Silo;
        await Task.WhenAll(work);
    }

    /// <summary>
    /// The learner silo with the fewest learners, as a hint for this run's learner if it is not active yet (placed at
    /// random, learners piled onto one silo past its share). Without an answer, placement picks.
    /// </summary>
    async Task<SiloAddress?> LearnerSiloAsync()
    {
        try { return await grains.GetGrain<IRunCapacityGrain>(0).LearnerSilo(run.RunId).WaitAsync(attempt); }
        catch (Exception e) when (ClusterFaults.IsTransient(e) && !attempt.IsCancellationRequested)
        {
            note?.Invoke($"no learner silo hint ({ClusterFaults.Classify(e).Description}); placement chooses");
            return null;
        }
    }

    /// <summary>A call to the learner; one that meets the learner's lost silo fails naming it.</summary>
    async Task<T> LearnerCall<T>(Func<Task<T>> call)
    {
        try { return await call().WaitAsync(attempt); }
        catch (Exception e) when (ClusterFaults.Classify(e).Kind == FaultKind.SiloLost && e is not SiloLostException)
        {
            throw new SiloLostException("learner", run.RunId, _learnerSilo, e);
        }
    }

    /// <summary>Loads a checkpoint's trainable tensors on the learner (an evaluation); the workers fetch them on their next call.</summary>
    public async Task LoadCheckpointAsync(string folder) => _weights.Version = await LearnerCall(() => Learner.LoadWeights(folder));

    /// <summary>Frees the learner and every shard worker now (an evaluation's, done with its model).</summary>
    public async Task UnloadAsync()
    {
        var work = new List<Task> { Learner.Unload() };
        foreach (var key in ShardKeys)
            work.Add(run.Config.IsPreference ? grains.GetGrain<IReferenceScorerGrain>(key).Release() : grains.GetGrain<IRolloutGeneratorGrain>(key).Release());
        try { await Task.WhenAll(work); }
        catch (Exception e) when (ClusterFaults.IsTransient(e)) { note?.Invoke($"unloading {run.RunId}: {ClusterFaults.Classify(e).Description}"); }
    }

    public Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken cancellation) =>
        Dispatch.GenerateAsync(step, prompts, cancellation, attempt);

    public Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken cancellation) =>
        Dispatch.SimilarityAsync(candidates, references, cancellation);

    /// <summary>Reward models on the scorer silos; remote rewards from this silo, one client per reward and attempt.</summary>
    public Task<IReadOnlyList<double>> RewardAsync(int reward, RewardInputs inputs, CancellationToken cancellation)
    {
        var spec = run.Config.RefAlign.EffectiveRewards[reward];
        return spec.Kind switch
        {
            RewardKind.RewardModel => Dispatch.RewardModelAsync(spec.Model!, inputs, cancellation),
            RewardKind.Remote => RemoteAsync(reward, spec, inputs, cancellation),
            _ => throw new InvalidOperationException($"refalign.rewards[{reward}] ({spec.Kind}) is not scored through RewardAsync."),
        };
    }

    readonly System.Collections.Concurrent.ConcurrentDictionary<int, RemoteRewardScorer> _remote = new();

    async Task<IReadOnlyList<double>> RemoteAsync(int reward, RewardSpec spec, RewardInputs inputs, CancellationToken cancellation)
    {
        // Per attempt: its own bound on calls in flight; the connection itself is shared (GrpcRewardTransport).
        var scorer = _remote.GetOrAdd(reward, _ => new RemoteRewardScorer(spec, new GrpcRewardTransport(spec, run.RunId)));
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, attempt);
        return await scorer.ScoreAsync(inputs, linked.Token);
    }

    public Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken cancellation)
    {
        // Sr-*: the replica for the coming step's prompted pass loads the learner's version meanwhile (the learner is idle now).
        if (prompted) _refinement.Prepare(_weights.Version);
        return Dispatch.ReferenceAsync(pairs, prompted, cancellation);
    }

    public async Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken cancellation) =>
        _weights.Track((await LearnerCall(() => Learner.LearnRefAlign(step, [.. rows.Select(r => r.ToMessage())]))).ToCompute());

    public async Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation)
    {
        PreferenceRowMessage[] batch = [.. rows.Select(r => r.ToMessage())];
        var version = _weights.Version;
        if (await _refinement.TakeAsync(version, cancellation) is not ({ } replica, { } manifest))
            return _weights.Track((await LearnerCall(() => Learner.LearnPreference(step, batch, promptedOffered: false))).ToCompute());
        // Sr-*: the replica pulls this version and runs the prompted pass while the learner runs its plain pass, then
        // offers it. The step never waits on the replica beyond the learner's own patience: once the learner is done,
        // the hand-off ends.
        using var handoff = CancellationTokenSource.CreateLinkedTokenSource(attempt);
        var offer = _refinement.OfferAsync(replica, manifest, step, rows, handoff.Token);
        StepResult result;
        try { result = _weights.Track((await LearnerCall(() => Learner.LearnPreference(step, batch, promptedOffered: true))).ToCompute()); }
        finally
        {
            await handoff.CancelAsync();
            await offer;
        }
        _refinement.Used(version, step, result);
        return result;
    }

    public async Task<StepResult> LearnSftAsync(int step, IReadOnlyList<SftSequence> rows, CancellationToken cancellation) =>
        _weights.Track((await LearnerCall(() => Learner.LearnSft(step, [.. rows.Select(r => r.ToMessage())]))).ToCompute());

    public Task<IReadOnlyDictionary<string, double>> EvaluateSftAsync(IReadOnlyList<SftSequence> rows, CancellationToken cancellation) =>
        LearnerCall(() => Learner.EvaluateSft([.. rows.Select(r => r.ToMessage())]));

    public Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation) =>
        LearnerCall(() => Learner.EvaluatePreference([.. rows.Select(r => r.ToMessage())]));

    /// <summary>A pipelined run saves the next step's prefetched rollouts with the checkpoint, so a resume from it is exact.</summary>
    public async Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken cancellation)
    {
        IReadOnlyList<RolloutMessage>? prefetch = run.Pipelined && await Dispatch.PrefetchOf(manifest.Step, attempt) is { } rollouts
            ? [.. rollouts.Select(r => r.ToMessage())]
            : null;
        return await LearnerCall(() => Learner.Checkpoint(manifest.ToMessage(), prefetch));
    }

    public IReadOnlyList<StepResult> RecentlyApplied { get; private set; } = [];

    /// <summary>
    /// Where the learner stands: a live learner (same activation) continues where it is; a new one (its silo was lost)
    /// restores the latest checkpoint from the shared checkpoint root. A pipelined run always restarts from the
    /// checkpoint, whose prefetched rollouts were sampled with the weights the lost prefetch had used.
    /// </summary>
    public async Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken cancellation)
    {
        var resume = await LearnerCall(() => Learner.Resume(fromCheckpoint: run.Pipelined));
        var manifest = resume.Position?.ToCompute();
        RecentlyApplied = [.. (resume.RecentlyApplied ?? []).Select(r => r.ToCompute())];
        _weights.Version = await LearnerCall(() => Learner.WeightVersion());
        if (resume.Prefetch is { } rollouts && manifest is not null) Dispatch.Prefetched(manifest.Step, [.. rollouts.Select(r => r.ToCompute())]);
        return manifest;
    }
}
