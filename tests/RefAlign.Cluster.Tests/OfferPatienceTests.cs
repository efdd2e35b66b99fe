using System.Diagnostics;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Grains;
using RefAlign.Grains;
using Xunit.Abstractions;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A Sr-DPO step offered a replica's prompted pass that never comes (the replica's silo died mid-pass) waits its
/// patience (grain code awaits the offer; no compute thread blocks), then computes the pass itself: the same loss as a step never offered one.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class OfferPatienceTests(ClusterFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task A_step_whose_offer_never_comes_computes_the_prompted_pass_itself_after_seconds()
    {
        var config = fixture.SrDpoConfig("patience", seed: 5, steps: 1) with { EvalEvery = 0 };
        var tok = TextTokenizer.Load(config.Policy.Model);
        var data = TrainingData.Load(config, tok);
        var pairs = data.BatchIndices(0, config.BatchSize, config.Seed, config.Data.Shuffle).Select(i => data.TrainPairs[i]).ToList();
        using var local = new LocalTrainingServices(config, tok, data);
        var refs = await local.ReferenceAsync(pairs, prompted: true, CancellationToken.None);
        var rows = pairs.Select((p, i) => new PreferenceRow(p, refs[i]).ToMessage()).ToList();

        async Task<(IReadOnlyDictionary<string, double> Metrics, TimeSpan Took)> Step(string learnerId, bool offered)
        {
            var learner = fixture.Client.GetGrain<ILearnerGrain>(learnerId);
            await learner.Initialize(config.ToJson(), totalSteps: 1, stepsPerEpoch: 1, epoch: 1);
            var clock = Stopwatch.StartNew();
            var result = await learner.LearnPreference(0, rows, promptedOffered: offered);
            return (result.Metrics, clock.Elapsed);
        }

        var stranded = await Step($"patience-{Guid.NewGuid():N}", offered: true);
        var plain = await Step($"patience-{Guid.NewGuid():N}", offered: false);
        output.WriteLine($"offered, never delivered: {stranded.Took.TotalSeconds:F1}s; not offered: {plain.Took.TotalSeconds:F1}s");

        Assert.Equal(0.0, stranded.Metrics[Learner.OffloadedMetric]); // it computed the pass itself
        Assert.False(plain.Metrics.ContainsKey(Learner.OffloadedMetric));
        // It did wait for the replica (Timing:OfferFloor on a tiny step) before computing the pass itself; its wait ends
        // by its patience, not by the call's timeout (the call returned).
        Assert.True(stranded.Took >= new RunTimings().OfferFloor * 0.9, $"waited {stranded.Took}");
        foreach (var key in new[] { "loss", "refine/delta", "rewards/margins", "grad_norm" })
            Assert.Equal(plain.Metrics[key], stranded.Metrics[key]);
    }
}
