using Orleans.Runtime.Placement;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// <see cref="ITrainingServices"/> over grains: prompts fan out to rollout generators by contiguous shards, pairs to
/// reference scorers by id, texts to one BERTScore worker per scorer silo; the learner owns steps, checkpoints and
/// weights. Shards spread over the silos of their role (a placement hint per shard, re-read every step, so a silo that
/// joins takes shards at the next step and one that leaves gives them up). A worker call that fails because its silo
/// was lost is sent again and lands on a surviving silo; workers are deterministic, so a retried step equals the first.
/// In pipelined mode the next step's generation starts as soon as this step's is back, so it overlaps learning and
/// runs one weight version behind (bounded by max_staleness). Every grain call ends when <paramref name="attempt"/> is
/// cancelled (the run's stall watch gave up on this attempt), whether or not its reply ever comes.
/// </summary>
public sealed class GrainTrainingServices(string runId, RunConfig config, string configJson, TrainingData data, IGrainFactory grains,
    RoleDirectory roles, int totalSteps, Action<string>? note = null, CancellationToken attempt = default) : ITrainingServices
{
    const int ScoreChunk = 64;
    readonly int _shards = config.Distributed.Shards;
    readonly bool _pipelined = config.Distributed.Mode == DistributedMode.Pipelined;
    long _version;
    long _syncBytes;
    double _syncSeconds;
    (int Step, Task<IReadOnlyList<Rollout>> Task)? _prefetch;

    ILearnerGrain Learner => grains.GetGrain<ILearnerGrain>(runId);

    /// <summary>The run's shard workers (generators or reference scorers); an SFT run has none, its learner does all.</summary>
    public IReadOnlyList<string> ShardKeys => config.IsSft ? [] : [.. Enumerable.Range(0, _shards).Select(s => $"{runId}/{s}")];

    /// <summary>Loads the model on the learner and on every shard worker of this run (in parallel).</summary>
    public async Task InitializeAsync(CancellationToken cancellation = default)
    {
        var stepsPerEpoch = data.StepsPerEpoch(config.BatchSize);
        var learnerSilo = await LearnerSiloAsync();
        var work = new List<Task> { Hinted(learnerSilo, () => Learner.Initialize(configJson, totalSteps, stepsPerEpoch)).WaitAsync(attempt) };
        var role = config.IsPreference ? SiloRoles.Reference : SiloRoles.Generator;
        foreach (var (key, shard) in ShardKeys.Select((k, i) => (k, i)))
            work.Add(Retry(() => Hinted(SiloFor(role, shard), () => config.IsPreference
                ? grains.GetGrain<IReferenceScorerGrain>(key).Initialize(configJson)
                : grains.GetGrain<IRolloutGeneratorGrain>(key).Initialize(configJson)), $"initializing {key}", cancellation));
        await Task.WhenAll(work);
    }

    /// <summary>
    /// The learner silo with the fewest learners, as a hint for this run's learner if it is not active yet (placed at
    /// random, learners piled onto one silo past its share). Without an answer, placement picks.
    /// </summary>
    async Task<SiloAddress?> LearnerSiloAsync()
    {
        try { return await grains.GetGrain<IRunCapacityGrain>(0).LearnerSilo(runId).WaitAsync(attempt); }
        catch (Exception e) when (ClusterFaults.IsTransient(e) && !attempt.IsCancellationRequested) { return null; }
    }

    /// <summary>Loads a checkpoint's trainable tensors on the learner (an evaluation); the workers fetch them on their next call.</summary>
    public async Task LoadCheckpointAsync(string folder) => _version = await Learner.LoadWeights(folder);

    /// <summary>Frees the learner and every shard worker now (an evaluation's, done with its model).</summary>
    public async Task UnloadAsync()
    {
        var work = new List<Task> { Learner.Unload() };
        foreach (var key in ShardKeys)
            work.Add(config.IsPreference ? grains.GetGrain<IReferenceScorerGrain>(key).Release() : grains.GetGrain<IRolloutGeneratorGrain>(key).Release());
        try { await Task.WhenAll(work); }
        catch (Exception e) when (ClusterFaults.IsTransient(e)) { }
    }

    /// <summary>
    /// Shard i → the i-th active silo of <paramref name="role"/>, round robin: never two shards on one silo while another
    /// has none. Read afresh on every call (and every retry), so it follows the cluster as silos come and go.
    /// </summary>
    SiloAddress? SiloFor(string role, int shard)
    {
        var silos = roles.Active(role);
        return silos.Count == 0 ? null : silos[shard % silos.Count];
    }

    /// <summary>Sends <paramref name="call"/> with <paramref name="silo"/> as the placement hint for a new activation.</summary>
    static T Hinted<T>(SiloAddress? silo, Func<T> call)
    {
        if (silo is null) return call();
        RequestContext.Set(IPlacementDirector.PlacementHintKey, silo);
        try { return call(); }
        finally { RequestContext.Remove(IPlacementDirector.PlacementHintKey); }
    }

    Task Retry(Func<Task> call, string what, CancellationToken cancellation) =>
        Retry(async () => { await call(); return true; }, what, cancellation);

    // A stop lets the step's calls finish (the loop stops after the step); only the stall watch abandons them.
    Task<T> Retry<T>(Func<Task<T>> call, string what, CancellationToken cancellation) =>
        ClusterFaults.RetryAsync(call, cancellation, (e, delay) =>
            note?.Invoke($"{what} failed ({e.GetType().Name}{(ClusterFaults.LostSilo(e) is { } s ? $", silo {s}" : "")}); retrying in {delay.TotalSeconds:0.#}s"),
            abandon: attempt);

    public async Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken cancellation)
    {
        IReadOnlyList<Rollout> rollouts;
        if (_prefetch is { } p && p.Step == step)
        {
            rollouts = await p.Task.WaitAsync(attempt);
            _prefetch = null;
        }
        else rollouts = await GenerateShards(step, prompts, Math.Max(0, _version), cancellation);
        if (_pipelined && step >= 0 && step + 1 < totalSteps)
        {
            // Sample step t+1 with the current weights while the learner applies step t.
            var next = data.BatchIndices(step + 1, config.BatchSize, config.Seed, config.Data.Shuffle).Select(i => data.TrainPrompts[i]).ToList();
            var minVersion = Math.Max(0, _version - config.Distributed.MaxStaleness + 1);
            _prefetch = (step + 1, GenerateShards(step + 1, next, minVersion, cancellation));
        }
        return rollouts;
    }

    async Task<IReadOnlyList<Rollout>> GenerateShards(int step, IReadOnlyList<ReferencePrompt> prompts, long minVersion, CancellationToken cancellation)
    {
        var per = (prompts.Count + _shards - 1) / _shards;
        var calls = new List<Task<GenerateReply>>();
        for (var s = 0; s < _shards && s * per < prompts.Count; s++)
        {
            var positions = Enumerable.Range(s * per, Math.Min(per, prompts.Count - s * per)).ToList();
            var (key, shard) = (ShardKeys[s], s);
            var request = new GenerateRequest(runId, step, minVersion, [.. positions.Select(i => prompts[i].ToMessage())], positions, Math.Max(0, _version));
            calls.Add(Retry(() => Hinted(SiloFor(SiloRoles.Generator, shard), () => grains.GetGrain<IRolloutGeneratorGrain>(key).Generate(request)),
                $"generating shard {key}", cancellation));
        }
        var replies = await Task.WhenAll(calls);
        for (var s = 0; s < replies.Length; s++)
        {
            var r = replies[s];
            _syncBytes += r.SyncBytes;
            _syncSeconds = Math.Max(_syncSeconds, r.SyncSeconds);
            TrainingTelemetry.Staleness.Record(Math.Max(0, _version - r.WeightVersion), new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, runId));
            await MoveIfMisplaced(SiloRoles.Generator, s, r.Silo, grains.GetGrain<IRolloutGeneratorGrain>(ShardKeys[s]).MoveTo);
        }
        return [.. replies.SelectMany(r => r.Rollouts).OrderBy(r => r.Position).ThenBy(r => r.SampleIndex).Select(r => r.ToCompute())];
    }

    /// <summary>A shard living elsewhere than its silo of now (one joined, or it was re-placed) moves before the next step.</summary>
    async Task MoveIfMisplaced(string role, int shard, string ranOn, Func<SiloAddress, Task> moveTo)
    {
        if (SiloFor(role, shard) is not { } wanted || ranOn.Length == 0 || ranOn == wanted.ToParsableString()) return;
        note?.Invoke($"shard {ShardKeys[shard]} moves from {ranOn} to {wanted.ToParsableString()} for the next step");
        await moveTo(wanted);
    }

    public async Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken cancellation)
    {
        var r = config.RefAlign;
        IReadOnlyList<string>? idf = r.Idf ? [.. data.TrainPrompts.Select(p => p.Reference)] : null;
        var calls = new List<Task<IReadOnlyList<double>>>();
        for (var start = 0; start < candidates.Count; start += ScoreChunk)
        {
            var n = Math.Min(ScoreChunk, candidates.Count - start);
            var request = new ScoreRequest(r.RewardModel, r.BertscoreLayers, r.Idf, idf, [.. candidates.Skip(start).Take(n)], [.. references.Skip(start).Take(n)]);
            var chunk = start / ScoreChunk;
            // Each chunk to the worker of one scorer silo, round robin; the silo list is re-read on a retry.
            calls.Add(Retry(() =>
            {
                var silo = SiloFor(SiloRoles.Scorer, chunk);
                return Hinted(silo, () => grains.GetGrain<IBertScoreScorerGrain>(silo?.ToParsableString() ?? "any").Score(request));
            }, $"scoring chunk {chunk}", cancellation));
        }
        return [.. (await Task.WhenAll(calls)).SelectMany(x => x)];
    }

    public async Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken cancellation)
    {
        // Sr-*: the replica for the coming step's prompted pass loads the learner's version meanwhile (the learner is idle now).
        if (prompted && _refine?.Version != _version) _refine = (_version, RefineReplicaAsync(_version));
        // A pair always goes to the same shard (by id), so each shard's cache sees its pairs again next epoch.
        var byShard = pairs.Select((p, i) => (p, i)).GroupBy(x => x.p.Id % _shards).ToList();
        var replies = await Task.WhenAll(byShard.Select(g =>
        {
            var key = ShardKeys[g.Key];
            PreferencePairMessage[] batch = [.. g.Select(x => x.p.ToMessage())];
            return Retry(() => Hinted(SiloFor(SiloRoles.Reference, g.Key), () => grains.GetGrain<IReferenceScorerGrain>(key).Score(batch, prompted)),
                $"reference shard {key}", cancellation);
        }));
        var result = new ReferenceLogProbs[pairs.Count];
        for (var s = 0; s < byShard.Count; s++)
        {
            var idx = byShard[s].Select(x => x.i).ToList();
            for (var k = 0; k < idx.Count; k++) result[idx[k]] = replies[s].Values[k].ToCompute();
            await MoveIfMisplaced(SiloRoles.Reference, byShard[s].Key, replies[s].Silo, grains.GetGrain<IReferenceScorerGrain>(ShardKeys[byShard[s].Key]).MoveTo);
        }
        return result;
    }

    public async Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken cancellation) =>
        Track((await Learner.LearnRefAlign(step, [.. rows.Select(r => r.ToMessage())]).WaitAsync(attempt)).ToCompute());

    public async Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation)
    {
        PreferenceRowMessage[] batch = [.. rows.Select(r => r.ToMessage())];
        var ready = _refine is { } r && r.Version == _version ? r.Replica : RefineReplicaAsync(_version);
        _refine = null;
        // A replica that is not up in time (e.g. its silo is stuck) is not waited for: the learner computes the pass.
        if (await Task.WhenAny(ready, Task.Delay(ReplicaGrace, cancellation)) != ready)
            RefineFailed(_version, $"prompted-pass replica {RefineKey} not ready within {ReplicaGrace.TotalSeconds:0}s");
        if (!ready.IsCompleted || await ready is not ({ } replica, { } manifest))
            return Track((await Learner.LearnPreference(step, batch, promptedOffered: false).WaitAsync(attempt)).ToCompute());
        // Sr-*: the replica pulls this version and runs the prompted pass while the learner runs its plain forward/backward,
        // then hands it over. The step never waits on the replica beyond the learner's own patience.
        var version = _version;
        _ = OfferPromptedAsync(replica, manifest, step, rows);
        var result = Track((await Learner.LearnPreference(step, batch, promptedOffered: true).WaitAsync(attempt)).ToCompute());
        if (result.Metrics.GetValueOrDefault(Compute.Training.Learner.OffloadedMetric, 1) == 0)
            RefineFailed(version, $"prompted pass on {RefineKey} was late for step {step}");
        return result;
    }

    string RefineKey => $"{runId}/refine";

    /// <summary>A replica call slower than this is given up (the learner gave up on it sooner, see LearnerGrain.OfferPatience).</summary>
    static readonly TimeSpan RefineTimeout = TimeSpan.FromMinutes(2);

    /// <summary>
    /// How long a step waits for its replica to hold the step's version (a first one loads its model meanwhile) before the
    /// learner computes the pass.
    /// </summary>
    static readonly TimeSpan ReplicaGrace = TimeSpan.FromSeconds(30);

    /// <summary>Steps after a failed or late replica run the prompted pass on the learner, so a sick silo costs one step's wait.</summary>
    const int RefinePause = 10;

    long _refineAfter;

    void RefineFailed(long version, string what)
    {
        if (_refineAfter > version) return; // already paused (the replica's failure and the learner's timeout both report)
        _refineAfter = version + RefinePause;
        note?.Invoke($"{what}; the learner computes the prompted pass for the next {RefinePause} steps");
    }

    /// <summary>The prompted-pass replica being brought to weight version <c>Version</c> ahead of the step that needs it.</summary>
    (long Version, Task<(IRolloutGeneratorGrain, WeightsManifest)?> Replica)? _refine;

    /// <summary>
    /// The replica for Sr-*'s prompted pass with its model loaded, and the manifest of the learner's current version
    /// (published now, while the learner is idle: it answers no manifest request while it learns), or null (the learner
    /// computes the pass): the run said so, no generator silo other than the learner's is active, or the replica could not
    /// be brought up.
    /// </summary>
    async Task<(IRolloutGeneratorGrain, WeightsManifest)?> RefineReplicaAsync(long version)
    {
        if (!config.IsSelfRefined || config.Preference.RefinementPass == RefinementPass.Learner || version < _refineAfter) return null;
        var learners = roles.Active(SiloRoles.Learner);
        if (roles.Active(SiloRoles.Generator).FirstOrDefault(s => !learners.Contains(s)) is not { } silo) return null;
        var replica = grains.GetGrain<IRolloutGeneratorGrain>(RefineKey);
        try
        {
            var manifest = Learner.GetWeights(Math.Max(0, version));
            var ranOn = await Hinted(silo, () => replica.SyncTo(runId, -1, -1)).WaitAsync(RefineTimeout);
            // Beside the learner it would wait on the compute threads the learner holds while it waits for the replica.
            if (learners.Any(l => l.ToParsableString() == ranOn))
            {
                note?.Invoke($"prompted-pass replica {RefineKey} is on learner silo {ranOn}; moving it to {silo.ToParsableString()}");
                await replica.MoveTo(silo);
                return null;
            }
            return (replica, await manifest);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            RefineFailed(version, $"prompted-pass replica {RefineKey} not ready ({e.GetType().Name}: {e.Message})");
            return null;
        }
    }

    /// <summary>Runs the prompted pass on the replica and hands the values (or null on failure: compute them) to the learner.</summary>
    async Task OfferPromptedAsync(IRolloutGeneratorGrain replica, WeightsManifest manifest, int step, IReadOnlyList<PreferenceRow> rows)
    {
        PromptedPassReply? reply = null;
        try
        {
            reply = await replica.ScorePrompted(new PromptedPassRequest(runId, step, manifest.Version, [.. rows.Select(r => r.Pair.ToMessage())], manifest))
                .WaitAsync(RefineTimeout);
        }
        catch (Exception e) { RefineFailed(_version, $"prompted pass on {RefineKey} failed ({e.GetType().Name}: {e.Message})"); }
        // Nobody awaits this: the learner's own call reports (and retries) whatever fails here too.
        try { await Learner.OfferPrompted(step, reply); }
        catch (Exception) { }
    }

    /// <summary>Notes the new version and attaches this step's weight transfer (parallel shards: the slowest one).</summary>
    StepResult Track(StepResult r)
    {
        _version = r.WeightVersion;
        if (_syncBytes == 0) return r;
        var metrics = new Dictionary<string, double>(r.Metrics) { ["weight_sync/bytes"] = _syncBytes, ["weight_sync/seconds"] = _syncSeconds };
        (_syncBytes, _syncSeconds) = (0, 0);
        return r with { Metrics = metrics };
    }

    public async Task<StepResult> LearnSftAsync(int step, IReadOnlyList<SftSequence> rows, CancellationToken cancellation) =>
        Track((await Learner.LearnSft(step, [.. rows.Select(r => r.ToMessage())]).WaitAsync(attempt)).ToCompute());

    public Task<IReadOnlyDictionary<string, double>> EvaluateSftAsync(IReadOnlyList<SftSequence> rows, CancellationToken cancellation) =>
        Learner.EvaluateSft([.. rows.Select(r => r.ToMessage())]).WaitAsync(attempt);

    public Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation) =>
        Learner.EvaluatePreference([.. rows.Select(r => r.ToMessage())]).WaitAsync(attempt);

    /// <summary>A pipelined run saves the next step's prefetched rollouts with the checkpoint, so a resume from it is exact.</summary>
    public async Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken cancellation)
    {
        IReadOnlyList<RolloutMessage>? prefetch = null;
        if (_pipelined && _prefetch is { } p && p.Step == manifest.Step)
            prefetch = [.. (await p.Task.WaitAsync(attempt)).Select(r => r.ToMessage())];
        return await Learner.Checkpoint(manifest.ToMessage(), prefetch).WaitAsync(attempt);
    }

    /// <summary>
    /// Where the learner stands: a live learner (same activation) continues where it is; a new one (its silo was lost)
    /// restores the latest checkpoint from the shared checkpoint root. A pipelined run always restarts from the
    /// checkpoint, whose prefetched rollouts were sampled with the weights the lost prefetch had used.
    /// </summary>
    public IReadOnlyList<StepResult> RecentlyApplied { get; private set; } = [];

    public async Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken cancellation)
    {
        var resume = await Learner.Resume(fromCheckpoint: _pipelined).WaitAsync(attempt);
        var manifest = resume.Position?.ToCompute();
        RecentlyApplied = [.. (resume.RecentlyApplied ?? []).Select(r => r.ToCompute())];
        _version = await Learner.WeightVersion().WaitAsync(attempt);
        _prefetch = resume.Prefetch is { } rollouts && manifest is not null
            ? (manifest.Step, Task.FromResult<IReadOnlyList<Rollout>>([.. rollouts.Select(r => r.ToCompute())]))
            : null;
        return manifest;
    }
}
