using RefAlign.Compute.Training;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// A step's work fanned out to the run's workers: prompts to rollout generators by contiguous shards, pairs to
/// reference scorers by id (a pair always meets the same shard's cache), texts to one reward scorer (BERTScore, reward
/// models) per scorer silo in chunks. Workers are deterministic, so a call retried on another silo returns what the first would have. In
/// pipelined mode the next step's generation starts as soon as this step's is back, so it overlaps learning and samples
/// up to <c>max_staleness</c> versions behind.
/// </summary>
public sealed class ShardDispatch(RunContext run, IGrainFactory grains, WorkerCalls workers, WeightSyncMeter weights)
{
    const int ScoreChunk = 64;
    (int Step, Task<IReadOnlyList<Rollout>> Task)? _prefetch;

    RunConfig Config => run.Config;

    /// <summary>Rollouts a restored checkpoint saved for its next step (a pipelined run's exact resume).</summary>
    public void Prefetched(int step, IReadOnlyList<Rollout> rollouts) => _prefetch = (step, Task.FromResult(rollouts));

    /// <summary>The prefetched rollouts of <paramref name="step"/>, for a checkpoint at that step; null when none.</summary>
    public async Task<IReadOnlyList<Rollout>?> PrefetchOf(int step, CancellationToken attempt) =>
        _prefetch is { } p && p.Step == step ? await p.Task.WaitAsync(attempt) : null;

    public async Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken cancellation, CancellationToken attempt)
    {
        IReadOnlyList<Rollout> rollouts;
        if (_prefetch is { } p && p.Step == step)
        {
            rollouts = await p.Task.WaitAsync(attempt);
            _prefetch = null;
        }
        else rollouts = await GenerateShards(step, prompts, Math.Max(0, weights.Version), cancellation);
        if (run.Pipelined && step >= 0 && step + 1 < run.TotalSteps)
        {
            // Sample step t+1 with the current weights while the learner applies step t.
            var next = run.Data.BatchIndices(step + 1, Config.BatchSize, Config.Seed, Config.Data.Shuffle).Select(i => run.Data.TrainPrompts[i]).ToList();
            var minVersion = Math.Max(0, weights.Version - Config.Distributed.MaxStaleness + 1);
            _prefetch = (step + 1, GenerateShards(step + 1, next, minVersion, cancellation));
        }
        return rollouts;
    }

    async Task<IReadOnlyList<Rollout>> GenerateShards(int step, IReadOnlyList<ReferencePrompt> prompts, long minVersion, CancellationToken cancellation)
    {
        var keys = run.ShardKeys;
        var per = (prompts.Count + run.Shards - 1) / run.Shards;
        var calls = new List<Task<GenerateReply>>();
        for (var s = 0; s < run.Shards && s * per < prompts.Count; s++)
        {
            var positions = Enumerable.Range(s * per, Math.Min(per, prompts.Count - s * per)).ToList();
            var request = new GenerateRequest(run.RunId, step, minVersion, [.. positions.Select(i => prompts[i].ToMessage())], positions, Math.Max(0, weights.Version));
            var generator = grains.GetGrain<IRolloutGeneratorGrain>(keys[s]);
            calls.Add(workers.SendAsync(SiloRoles.Generator, s, keys[s], _ => generator.Generate(request), cancellation));
        }
        var replies = await Task.WhenAll(calls);
        for (var s = 0; s < replies.Length; s++)
        {
            weights.Record(replies[s]);
            await workers.MoveIfMisplaced(SiloRoles.Generator, s, keys[s], replies[s].Silo, grains.GetGrain<IRolloutGeneratorGrain>(keys[s]).MoveTo);
        }
        return [.. replies.SelectMany(r => r.Rollouts).OrderBy(r => r.Position).ThenBy(r => r.SampleIndex).Select(r => r.ToCompute())];
    }


    public async Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken cancellation)
    {
        var keys = run.ShardKeys;
        var byShard = pairs.Select((p, i) => (p, i)).GroupBy(x => x.p.Id % run.Shards).ToList();
        var replies = await Task.WhenAll(byShard.Select(g =>
        {
            PreferencePairMessage[] batch = [.. g.Select(x => x.p.ToMessage())];
            var scorer = grains.GetGrain<IReferenceScorerGrain>(keys[g.Key]);
            return workers.SendAsync(SiloRoles.Reference, g.Key, keys[g.Key], _ => scorer.Score(batch, prompted), cancellation);
        }));
        var result = new ReferenceLogProbs[pairs.Count];
        for (var s = 0; s < byShard.Count; s++)
        {
            var idx = byShard[s].Select(x => x.i).ToList();
            for (var k = 0; k < idx.Count; k++) result[idx[k]] = replies[s].Values[k].ToCompute();
            var key = keys[byShard[s].Key];
            await workers.MoveIfMisplaced(SiloRoles.Reference, byShard[s].Key, key, replies[s].Silo, grains.GetGrain<IReferenceScorerGrain>(key).MoveTo);
        }
        return result;
    }

    public Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken cancellation)
    {
        var r = Config.RefAlign;
        IReadOnlyList<string>? idf = r.Idf ? [.. run.Data.TrainPrompts.Select(p => p.Reference)] : null;
        return OnScorers(candidates.Count, (start, n) => new RewardScoreRequest(RewardScorerKind.BertScore, r.RewardModel, r.BertscoreLayers, r.Idf, idf,
            [], [.. candidates.Skip(start).Take(n)], [.. references.Skip(start).Take(n)]), cancellation);
    }

    /// <summary>A reward model's score of each (prompt, response), on the scorer silos.</summary>
    public Task<IReadOnlyList<double>> RewardModelAsync(string model, RewardInputs inputs, CancellationToken cancellation) =>
        OnScorers(inputs.Count, (start, n) =>
        {
            var chunk = inputs.Slice(start, n);
            return new RewardScoreRequest(RewardScorerKind.RewardModel, model, null, false, null, chunk.Prompts, chunk.Responses, chunk.References);
        }, cancellation);

    /// <summary>
    /// <paramref name="count"/> samples in chunks, each chunk to the (stateless) scorer of one scorer silo, round robin;
    /// the silo list is re-read on a retry. Scores come back in sample order.
    /// </summary>
    async Task<IReadOnlyList<double>> OnScorers(int count, Func<int, int, RewardScoreRequest> chunkRequest, CancellationToken cancellation)
    {
        var calls = new List<Task<IReadOnlyList<double>>>();
        for (var start = 0; start < count; start += ScoreChunk)
        {
            var request = chunkRequest(start, Math.Min(ScoreChunk, count - start));
            var chunk = start / ScoreChunk;
            calls.Add(workers.SendAsync(SiloRoles.Scorer, chunk, $"scoring chunk {chunk}",
                silo => grains.GetGrain<IRewardScorerGrain>(silo?.ToParsableString() ?? "any").Score(request), cancellation));
        }
        return [.. (await Task.WhenAll(calls)).SelectMany(x => x)];
    }
}
