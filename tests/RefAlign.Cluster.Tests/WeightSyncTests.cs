using RefAlign.Compute.Training.Optimization;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Presets;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Grains;
using static TorchSharp.torch;

namespace RefAlign.Cluster.Tests;

/// <summary>A decoder of ~150 MB fp32 (3 layers, hidden 1024) with the tiny preset's tokenizer.</summary>
public sealed class BigModelFixture : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("refalign-big-").FullName;

    public BigModelFixture()
    {
        var tiny = ModelPresets.Initialize(Dir, "tiny", "llama", seed: 1);
        var big = tiny with
        {
            HiddenSize = 1024, IntermediateSize = 2816, NumHiddenLayers = 3, NumAttentionHeads = 16, NumKeyValueHeads = 16, HeadDim = 64,
        };
        using var model = new CausalLm(big);
        model.InitializeWeights(7);
        model.SavePretrained(Dir); // replaces the tiny config.json and weights; the tokenizer stays
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>Weight publication: chunked, bit-exact, pulled by stale generators; learner steps are idempotent.</summary>
[Collection(ClusterCollection.Name)]
public sealed class WeightSyncTests(ClusterFixture fixture, BigModelFixture big) : IClassFixture<BigModelFixture>
{
    string ConfigJson(string name) => (fixture.RefAlignConfig(name, seed: 11, steps: 4) with
    {
        Policy = new PolicySection { Model = big.Dir },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 0 },
        RefAlign = new RefAlignSection { RewardModel = fixture.EncoderDir, NumSamples = 2, MaxNewTokens = 6, TopK = 50 },
    }).Validate().ToJson();

    static WeightSnapshot LocalSnapshot(string folder)
    {
        using var model = CausalLm.FromPretrained(folder);
        return WeightSnapshot.Capture(model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
    }

    async Task<WeightSnapshot> FetchThroughClient(ILearnerGrain learner, WeightsManifest manifest)
    {
        var chunks = new List<byte[]>();
        for (var i = 0; i < manifest.ChunkCount; i++)
        {
            var chunk = await learner.GetWeightsChunk(manifest.Version, i);
            Assert.True(chunk.Length <= LearnerGrain.ChunkBytes, $"chunk {i} is {chunk.Length} bytes");
            if (i < manifest.ChunkCount - 1) Assert.Equal(manifest.ChunkBytes, chunk.Length);
            chunks.Add(chunk);
        }
        return WeightSnapshot.FromChunks([.. manifest.Entries.Select(e => e.ToCompute())], chunks);
    }

    [Fact]
    public async Task A_learner_re_placed_and_not_yet_initialized_is_not_ready_for_weight_calls_not_past_their_version()
    {
        // A generator that fell back to chunks after the learner's silo was lost reaches the new, empty activation: the run
        // must see a learner to initialize and resume (transient), not a version it moved past (which failed the run).
        var learner = fixture.Client.GetGrain<ILearnerGrain>($"replaced-{Guid.NewGuid():N}");
        await Assert.ThrowsAsync<LearnerNotReadyException>(() => learner.GetWeightsChunk(3, 0));
        await Assert.ThrowsAsync<LearnerNotReadyException>(() => learner.GetWeights(3));
        Assert.Null(await learner.JoinRelay(3, "tcp://127.0.0.1:1/run/3/token"));
        await learner.Release();
    }

    [Fact]
    public async Task A_150MB_weight_set_reaches_another_silo_in_chunks_bit_exactly()
    {
        var runId = $"w150-{Guid.NewGuid():N}";
        var learner = fixture.Client.GetGrain<ILearnerGrain>(runId);
        await learner.Initialize(ConfigJson("w150"), 4, 4, epoch: 1);
        Assert.Equal(ClusterFixture.SiloA, await fixture.WhereIsAsync(learner));
        try
        {
            var expected = LocalSnapshot(big.Dir);
            Assert.True(expected.TotalBytes is > 140_000_000 and < 170_000_000, $"{expected.TotalBytes} bytes");

            var manifest = await learner.GetWeights(-1);
            Assert.Equal(0, manifest.Version);
            Assert.Equal(expected.TotalBytes, manifest.TotalBytes);
            Assert.True(manifest.ChunkBytes <= LearnerGrain.ChunkBytes);
            Assert.True(manifest.ChunkCount > 1, $"{manifest.ChunkCount} chunk(s)");
            Assert.Equal((int)((manifest.TotalBytes + manifest.ChunkBytes - 1) / manifest.ChunkBytes), manifest.ChunkCount);

            // Learner silo → a grain on a generator silo (silo-to-silo messages), compared by hash.
            var probe = fixture.Client.GetGrain<IWeightFetchProbeGrain>(runId);
            var fetched = await probe.FetchAsync(runId);
            Assert.NotEqual(fixture.Silo(ClusterFixture.SiloA).SiloAddress.ToString(), fetched.Silo);
            Assert.Equal(manifest.ChunkCount, fetched.ChunkCount);
            Assert.All(fetched.ChunkLengths, n => Assert.True(n <= LearnerGrain.ChunkBytes, $"chunk of {n} bytes"));
            Assert.Equal(manifest.TotalBytes, fetched.ChunkLengths.Sum(n => (long)n));
            Assert.Equal(expected.Entries.Select(e => e.Name), fetched.EntryNames);
            Assert.Equal(expected.Digest(), fetched.Digest);
            Assert.Equal(expected.Digest(), manifest.Digest);

            // Learner silo → the cluster client, compared byte for byte, with the index.
            var received = await FetchThroughClient(learner, manifest);
            Assert.True(expected.Data.AsSpan().SequenceEqual(received.Data), "received weights differ from the model's");
            Assert.Equal(expected.Entries.Select(e => (e.Name, e.DType, string.Join(",", e.Shape), e.Offset, e.Length)),
                received.Entries.Select(e => (e.Name, e.DType, string.Join(",", e.Shape), e.Offset, e.Length)));
        }
        finally
        {
            await fixture.Cluster.DeactivateAsync(learner);
        }
    }

    [Fact]
    public async Task A_retried_learner_step_is_applied_once_and_a_stale_generator_refreshes()
    {
        var runId = $"wsync-{Guid.NewGuid():N}";
        var json = ConfigJson("wsync");
        var config = RunConfig.Parse(json);
        var learner = fixture.Client.GetGrain<ILearnerGrain>(runId);
        var generator = fixture.Client.GetGrain<IRolloutGeneratorGrain>($"{runId}/0");
        await Task.WhenAll(learner.Initialize(json, 4, 4, epoch: 1), generator.Initialize(json));
        Assert.NotEqual(ClusterFixture.SiloA, await fixture.WhereIsAsync(generator));
        try
        {
            Assert.Equal(0, await generator.WeightVersion());
            var tok = TextTokenizer.Load(big.Dir);
            var eos = tok.EosIds[0];
            var prompt = tok.Encode("How do plants make food?").ToArray();
            RolloutRowMessage[] rows =
            [
                new(0, 0, prompt, [.. tok.Encode("They use sunlight to make sugar.", addSpecialTokens: false), eos], 1.0),
                new(0, 1, prompt, [.. tok.Encode("I do not know.", addSpecialTokens: false), eos], -1.0),
            ];

            // The same step sent twice (a retried call): applied once, the retry answers with the recorded result.
            var first = await learner.LearnRefAlign(0, rows);
            var v1 = await ProbeHashAsync(runId);
            var retry = await learner.LearnRefAlign(0, rows);
            Assert.Equal((0, 1L), (first.Step, first.WeightVersion));
            Assert.Equal((first.Step, first.WeightVersion), (retry.Step, retry.WeightVersion));
            Assert.Equal(first.Metrics.OrderBy(kv => kv.Key), retry.Metrics.OrderBy(kv => kv.Key));
            Assert.Equal(1, await learner.WeightVersion());
            Assert.Equal(v1, await ProbeHashAsync(runId)); // the weights did not move again
            // A step from the future is refused and changes nothing.
            await Assert.ThrowsAsync<InvalidOperationException>(() => learner.LearnRefAlign(3, rows));
            Assert.Equal(1, await learner.WeightVersion());

            // The generator still holds version 0; a request that needs version 1 makes it pull the new weights first.
            Assert.Equal(0, await generator.WeightVersion());
            ReferencePrompt[] prompts = [new(0, prompt, "How do plants make food?", "Photosynthesis.", false)];
            var reply = await generator.Generate(new GenerateRequest(runId, 1, 1, [.. prompts.Select(p => p.ToMessage())], [0]));
            Assert.Equal(1, reply.WeightVersion);
            Assert.Equal(1, await generator.WeightVersion());

            // It sampled with exactly the learner's version-1 weights: the same rollouts as a local copy of those
            // weights gives, and not what the initial weights give.
            var v1Weights = await FetchThroughClient(learner, await learner.GetWeights(-1));
            var withV1 = GenerateLocally(config, tok, prompts, v1Weights);
            var withV0 = GenerateLocally(config, tok, prompts, null);
            Assert.Equal(withV1.Count, reply.Rollouts.Count);
            for (var i = 0; i < withV1.Count; i++)
            {
                Assert.Equal(withV1[i].Completion, reply.Rollouts[i].Completion);
                Assert.Equal(withV1[i].TokenLogProbs.Length, reply.Rollouts[i].TokenLogProbs.Length);
                for (var t = 0; t < withV1[i].TokenLogProbs.Length; t++)
                    Assert.True(Math.Abs(withV1[i].TokenLogProbs[t] - reply.Rollouts[i].TokenLogProbs[t]) <= 1e-5,
                        $"rollout {i} token {t}: {withV1[i].TokenLogProbs[t]} vs {reply.Rollouts[i].TokenLogProbs[t]}");
            }
            var drift = withV0.Zip(withV1).Max(p => p.First.Completion.SequenceEqual(p.Second.Completion)
                ? p.First.TokenLogProbs.Zip(p.Second.TokenLogProbs).Max(x => Math.Abs(x.First - x.Second))
                : float.PositiveInfinity);
            Assert.True(drift > 1e-3, $"version 0 and 1 sample alike (max |Δ log p| {drift}); the check would be vacuous");

            // An already fresh generator does not sync again for an older minimum.
            var again = await generator.Generate(new GenerateRequest(runId, 1, 0, [.. prompts.Select(p => p.ToMessage())], [0]));
            Assert.Equal(1, again.WeightVersion);
        }
        finally
        {
            await fixture.Cluster.DeactivateAsync(generator);
            await fixture.Cluster.DeactivateAsync(learner);
        }

        async Task<string> ProbeHashAsync(string id) =>
            (await fixture.Client.GetGrain<IWeightFetchProbeGrain>($"{id}/probe-{Guid.NewGuid():N}").FetchAsync(id)).Digest;
    }

    static IReadOnlyList<Rollout> GenerateLocally(RunConfig config, TextTokenizer tok, IReadOnlyList<ReferencePrompt> prompts, WeightSnapshot? weights)
    {
        using var model = CausalLm.FromPretrained(config.Policy.Model);
        weights?.ApplyTo(model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter));
        IReadOnlyList<int> eos = [.. tok.EosIds.Concat(model.Config.EosTokenIds).Distinct()];
        var pad = tok.PadId ?? model.Config.PadTokenId ?? eos[0];
        return RolloutWorker.Generate(model, ids => tok.Decode(ids), prompts, [.. Enumerable.Range(0, prompts.Count)],
            config.RefAlign, config.Seed, 1, [.. eos], pad);
    }
}
