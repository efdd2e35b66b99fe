using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// Pipelined RefAlign: step t+1 is sampled while the learner applies step t, so its samples come from the weights one
/// version behind. Step 1 (both modes sample version 0) must equal the sync run; later steps must not, or the overlap
/// did not happen.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class PipelinedRunTests(ClusterFixture fixture)
{
    static double[] Rewards(IEnumerable<RunEvent> events) =>
        [.. events.Where(e => e.Kind == RunEventKind.Step).OrderBy(e => e.Step).Select(e => e.Metrics["reward/mean"])];

    [Fact]
    public async Task Pipelined_generation_runs_one_version_behind_and_completes()
    {
        var sync = fixture.RefAlignConfig("sync", seed: 9, steps: 4);
        var pipelined = sync with { Name = "pipelined", Distributed = sync.Distributed with { Mode = DistributedMode.Pipelined, MaxStaleness = 1 } };
        var syncId = await fixture.Control.StartRunAsync(sync.ToJson());
        var (syncSummary, syncEvents) = await fixture.WaitForEndAsync(syncId, TimeSpan.FromMinutes(2));
        var pipeId = await fixture.Control.StartRunAsync(pipelined.ToJson());
        var (pipeSummary, pipeEvents) = await fixture.WaitForEndAsync(pipeId, TimeSpan.FromMinutes(2));

        Assert.True(syncSummary.Status == RunStatus.Completed, syncSummary.Error);
        Assert.True(pipeSummary.Status == RunStatus.Completed, pipeSummary.Error);
        Assert.Equal(4, pipeSummary.WeightVersion);
        var (a, b) = (Rewards(syncEvents), Rewards(pipeEvents));
        Assert.Equal(4, b.Length);
        Assert.Equal(a[0], b[0], 6);
        Assert.NotEqual(a[1..].Select(x => Math.Round(x, 6)), b[1..].Select(x => Math.Round(x, 6)));
        // Pipelined steps carry the truncated importance weights' statistics (docs/algorithms.md §8); sync steps none.
        var pipeSteps = pipeEvents.Where(e => e.Kind == RunEventKind.Step).Select(e => e.Metrics).ToList();
        Assert.All(pipeSteps, m => Assert.InRange(m["off_policy/is_weight_mean"], 0.0, 1.0));
        Assert.All(pipeSteps, m => Assert.InRange(m["off_policy/is_clip_fraction"], 0.0, 1.0));
        Assert.Contains(pipeSteps.Skip(1), m => m["off_policy/is_weight_mean"] < 1.0 - 1e-4); // stale samples were down-weighted
        Assert.All(syncEvents.Where(e => e.Kind == RunEventKind.Step), e => Assert.False(e.Metrics.ContainsKey("off_policy/is_weight_mean")));
        // The last sampled step (4) used version 2 in pipelined mode; sync used version 3.
        Assert.Equal(2, await fixture.Client.GetGrain<IRolloutGeneratorGrain>($"{pipeId}/0").WeightVersion());
        Assert.Equal(3, await fixture.Client.GetGrain<IRolloutGeneratorGrain>($"{syncId}/0").WeightVersion());
    }
}
