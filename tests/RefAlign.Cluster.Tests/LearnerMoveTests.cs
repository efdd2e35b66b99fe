using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Runtime.Placement;
using Orleans.TestingHost;
using RefAlign.Contracts.Grains;
using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A learner that some call activated before its run did (a generator's weight fetch after the learner's silo was lost)
/// sits where placement picked at random; the run's initialize names the learner silo it chose, and the empty
/// activation moves there before it loads anything.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class LearnerMoveTests(ClusterFixture fixture)
{
    [Fact]
    public async Task An_empty_learner_moves_to_the_silo_its_run_hints_before_loading_and_a_loaded_one_stays()
    {
        var second = await fixture.Cluster.StartAdditionalSiloAsync(); // a second learner silo, for this test
        var runId = $"moving-{Guid.NewGuid():N}";
        var learner = fixture.Client.GetGrain<ILearnerGrain>(runId);
        try
        {
            await fixture.Cluster.UntilRolesPropagateAsync();
            var first = fixture.Silo(ClusterFixture.SiloA);
            bool On(InProcessSiloHandle silo) => silo.ServiceProvider.GetRequiredService<LocalLearners>().RunIds.Contains(runId);

            // The stray call lands on A and finds nothing loaded.
            await Assert.ThrowsAsync<LearnerNotReadyException>(() => Hinted(first.SiloAddress, learner.WeightVersion));
            Assert.True(On(first));

            // The run's initialize, hinted at the second silo: the activation on A moves there instead of loading.
            var config = fixture.RefAlignConfig(runId, seed: 3, steps: 2).ToJson();
            await Assert.ThrowsAsync<LearnerMovingException>(() => Hinted(second.SiloAddress, () => learner.Initialize(config, 2, 1)));
            await Hinted(second.SiloAddress, () => learner.Initialize(config, 2, 1));
            Assert.True(On(second), "the learner did not load on the silo its run chose");
            Assert.False(On(first), "the empty activation stayed on the first silo");
            Assert.Equal(0, await learner.WeightVersion());

            // Loaded, it stays (its weights and optimizer state are there): a later hint elsewhere changes nothing.
            await Hinted(first.SiloAddress, () => learner.Initialize(config, 2, 1));
            Assert.True(On(second) && !On(first));
        }
        finally
        {
            await learner.Unload();
            await fixture.Cluster.StopSiloAsync(second);
        }
    }

    static async Task<T> Hinted<T>(SiloAddress silo, Func<Task<T>> call)
    {
        RequestContext.Set(IPlacementDirector.PlacementHintKey, silo);
        try { return await call(); }
        finally { RequestContext.Remove(IPlacementDirector.PlacementHintKey); }
    }

    static async Task Hinted(SiloAddress silo, Func<Task> call) => await Hinted(silo, async () => { await call(); return 0; });
}
