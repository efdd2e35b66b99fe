using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Grains;

/// <summary>
/// <see cref="ITrainingServices"/> over grains: prompts fan out to rollout generators by contiguous shards, pairs to
/// reference scorers by id, texts to stateless BERTScore workers; the learner owns steps, checkpoints and weights.
/// In pipelined mode the next step's generation starts as soon as this step's is back, so it overlaps learning and
/// runs one weight version behind (bounded by max_staleness).
/// </summary>
public sealed class GrainTrainingServices(string runId, RunConfig config, string configJson, TrainingData data, IGrainFactory grains, int totalSteps)
    : ITrainingServices
{
    const int ScoreChunk = 64;
    readonly int _shards = config.Distributed.Shards;
    readonly bool _pipelined = config.Distributed.Mode == DistributedMode.Pipelined;
    long _version;
    long _syncBytes;
    double _syncSeconds;
    (int Step, Task<IReadOnlyList<Rollout>> Task)? _prefetch;

    ILearnerGrain Learner => grains.GetGrain<ILearnerGrain>(runId);

    public IReadOnlyList<string> ShardKeys => [.. Enumerable.Range(0, _shards).Select(s => $"{runId}/{s}")];

    /// <summary>Loads the model on the learner and on every shard worker of this run (in parallel).</summary>
    public async Task InitializeAsync()
    {
        var work = new List<Task> { Learner.Initialize(configJson, totalSteps) };
        foreach (var key in ShardKeys)
            work.Add(config.IsPreference
                ? grains.GetGrain<IReferenceScorerGrain>(key).Initialize(configJson)
                : grains.GetGrain<IRolloutGeneratorGrain>(key).Initialize(configJson));
        await Task.WhenAll(work);
    }

    public async Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken cancellation)
    {
        IReadOnlyList<Rollout> rollouts;
        if (_prefetch is { } p && p.Step == step)
        {
            rollouts = await p.Task;
            _prefetch = null;
        }
        else rollouts = await GenerateShards(step, prompts, Math.Max(0, _version));
        if (_pipelined && step >= 0 && step + 1 < totalSteps)
        {
            // Sample step t+1 with the current weights while the learner applies step t.
            var next = data.BatchIndices(step + 1, config.BatchSize, config.Seed, config.Data.Shuffle).Select(i => data.TrainPrompts[i]).ToList();
            var minVersion = Math.Max(0, _version - config.Distributed.MaxStaleness + 1);
            _prefetch = (step + 1, GenerateShards(step + 1, next, minVersion));
        }
        return rollouts;
    }

    async Task<IReadOnlyList<Rollout>> GenerateShards(int step, IReadOnlyList<ReferencePrompt> prompts, long minVersion)
    {
        var per = (prompts.Count + _shards - 1) / _shards;
        var calls = new List<Task<GenerateReply>>();
        for (var s = 0; s < _shards && s * per < prompts.Count; s++)
        {
            var positions = Enumerable.Range(s * per, Math.Min(per, prompts.Count - s * per)).ToList();
            calls.Add(grains.GetGrain<IRolloutGeneratorGrain>(ShardKeys[s])
                .Generate(new GenerateRequest(runId, step, minVersion, [.. positions.Select(i => prompts[i].ToMessage())], positions, Math.Max(0, _version))));
        }
        var replies = await Task.WhenAll(calls);
        foreach (var r in replies)
        {
            _syncBytes += r.SyncBytes;
            _syncSeconds = Math.Max(_syncSeconds, r.SyncSeconds);
        }
        foreach (var r in replies)
            TrainingTelemetry.Staleness.Record(Math.Max(0, _version - r.WeightVersion), new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, runId));
        return [.. replies.SelectMany(r => r.Rollouts).OrderBy(r => r.Position).ThenBy(r => r.SampleIndex).Select(r => r.ToCompute())];
    }

    public async Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken cancellation)
    {
        var r = config.RefAlign;
        IReadOnlyList<string>? idf = r.Idf ? [.. data.TrainPrompts.Select(p => p.Reference)] : null;
        var calls = new List<Task<IReadOnlyList<double>>>();
        for (var start = 0; start < candidates.Count; start += ScoreChunk)
        {
            var n = Math.Min(ScoreChunk, candidates.Count - start);
            calls.Add(grains.GetGrain<IBertScoreScorerGrain>(0).Score(new ScoreRequest(r.RewardModel, r.BertscoreLayers, r.Idf, idf,
                [.. candidates.Skip(start).Take(n)], [.. references.Skip(start).Take(n)])));
        }
        return [.. (await Task.WhenAll(calls)).SelectMany(x => x)];
    }

    public async Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken cancellation)
    {
        // A pair always goes to the same shard (by id), so each shard's cache sees its pairs again next epoch.
        var byShard = pairs.Select((p, i) => (p, i)).GroupBy(x => x.p.Id % _shards).ToList();
        var replies = await Task.WhenAll(byShard.Select(g =>
            grains.GetGrain<IReferenceScorerGrain>(ShardKeys[g.Key]).Score([.. g.Select(x => x.p.ToMessage())], prompted)));
        var result = new ReferenceLogProbs[pairs.Count];
        for (var s = 0; s < byShard.Count; s++)
        {
            var idx = byShard[s].Select(x => x.i).ToList();
            for (var k = 0; k < idx.Count; k++) result[idx[k]] = replies[s][k].ToCompute();
        }
        return result;
    }

    public async Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken cancellation) =>
        Track((await Learner.LearnRefAlign(step, [.. rows.Select(r => r.ToMessage())])).ToCompute());

    public async Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation) =>
        Track((await Learner.LearnPreference(step, [.. rows.Select(r => r.ToMessage())])).ToCompute());

    /// <summary>Notes the new version and attaches this step's weight transfer (parallel shards: the slowest one).</summary>
    StepResult Track(StepResult r)
    {
        _version = r.WeightVersion;
        if (_syncBytes == 0) return r;
        var metrics = new Dictionary<string, double>(r.Metrics) { ["weight_sync/bytes"] = _syncBytes, ["weight_sync/seconds"] = _syncSeconds };
        (_syncBytes, _syncSeconds) = (0, 0);
        return r with { Metrics = metrics };
    }

    public Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation) =>
        Learner.EvaluatePreference([.. rows.Select(r => r.ToMessage())]);

    public Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken cancellation) => Learner.Checkpoint(manifest.ToMessage());

    public async Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken cancellation)
    {
        var manifest = (await Learner.RestoreLatest())?.ToCompute();
        _version = await Learner.WeightVersion();
        return manifest;
    }
}
