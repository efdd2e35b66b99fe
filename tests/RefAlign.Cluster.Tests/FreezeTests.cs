using System.Diagnostics;
using RefAlign.Client;
using RefAlign.Compute.Training.Checkpoints;
using Xunit.Abstractions;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// Gray failures and operators acting during failovers, on real silo processes: a silo that stops answering without
/// dying (SIGSTOP) is handled like a lost one once the cluster declares it dead, and when it comes back it writes nothing
/// into the run it no longer owns (the learner epoch fences it off) and exits; a stop sent during a failover ends the
/// run stopped and resumable.
/// </summary>
[Collection(FailoverCollection.Name)]
[Trait("Tier", "Process")]
public sealed class FreezeTests(FailoverClusterFixture fixture, ITestOutputHelper output) : IAsyncLifetime
{
    ProcessCluster Cluster => fixture.Cluster;

    FailoverRuns Runs => new(Cluster);

    public Task InitializeAsync() => fixture.HealAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    long StoredEpoch(string runId) => new EpochFence(Path.Combine(Cluster.CheckpointRoot, runId), 0).Stored();

    [Fact]
    public async Task A_stop_sent_during_a_learner_failover_ends_the_run_stopped_and_a_resume_ends_it_exactly()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 10;
        var config = TinyRuns.RefAlign("stop-failover", steps, checkpointEvery: 2);
        var (twin, runId) = await Runs.StartBesideTwinAsync(client, config, 4);
        var learnerSilo = await Cluster.PlacedAsync(client, "learner", runId);
        await Cluster[learnerSilo].KillAsync();
        await client.StopRunAsync(runId);

        var stopped = await Runs.EndedAsync(client, runId);
        output.WriteLine($"{stopped.Status} at step {stopped.Step}: {stopped.Error}");
        Assert.True(stopped.Status == RunStatus.Stopped, $"{stopped.Status}: {stopped.Error}\n{FailoverRuns.StatusLines(await FailoverRuns.EventsAsync(client, runId))}");
        // A sentence for an operator, not an exception dump with internal grain ids.
        Assert.DoesNotContain("Exception", stopped.Error ?? "");
        Assert.DoesNotContain("Grain", stopped.Error ?? "");

        await client.ResumeRunAsync(runId);
        var outcome = await Runs.FinishAsync(client, runId);
        Assert.Equal(twin.WeightsSha256, outcome.WeightsSha256);
        Assert.Equal(Enumerable.Range(0, steps), outcome.Lineage);
    }

    [Fact]
    public async Task A_learner_silo_frozen_past_its_death_declaration_writes_nothing_when_it_thaws_and_exits()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 12;
        var config = TinyRuns.RefAlign("freeze-learner", steps, checkpointEvery: 3);
        var (twin, runId) = await Runs.StartBesideTwinAsync(client, config, 4);
        var learnerSilo = await Cluster.PlacedAsync(client, "learner", runId);
        var frozenEpoch = StoredEpoch(runId);
        var frozenAt = DateTime.UtcNow;
        var clock = Stopwatch.StartNew();
        Cluster[learnerSilo].Freeze();
        try
        {
            // The run moves on by itself: a new learner elsewhere claims the run with a newer epoch, and trains.
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
            while (StoredEpoch(runId) <= frozenEpoch)
            {
                Assert.True(DateTime.UtcNow < deadline, $"no new learner claimed the run\n{Cluster.Logs(20)}");
                await Task.Delay(200);
            }
            var recoveredAfter = clock.Elapsed;
            var step = (await client.GetRunAsync(runId)).Step;
            await Runs.AtStepAsync(client, runId, Math.Min(steps - 1, step + 1));
            output.WriteLine($"learner silo {learnerSilo} frozen at step ≥ 4; a new learner claimed the run {recoveredAfter.TotalSeconds:F1}s later");
        }
        finally
        {
            Cluster[learnerSilo].Thaw();
        }
        var outcome = await Runs.FinishAsync(client, runId);
        output.WriteLine($"run finished {clock.Elapsed.TotalSeconds:F1}s after the freeze");
        FailoverRuns.AssertExactlyAs(twin, outcome, steps);
        // Orleans' own rule: a silo that finds itself declared dead stops.
        Assert.True(await Cluster[learnerSilo].ExitedAsync(TimeSpan.FromMinutes(2)), $"{learnerSilo} still runs after it was thawed");
        // Nothing the frozen learner did after its freeze reached the checkpoint root: once a newer epoch wrote to the
        // journal, the old one never did again, and every checkpoint of the old epoch predates the freeze.
        var firstNewer = outcome.Journal.ToList().FindIndex(e => e.Epoch > frozenEpoch);
        Assert.True(firstNewer >= 0);
        Assert.DoesNotContain(outcome.Journal.Skip(firstNewer), e => e.Epoch <= frozenEpoch);
        foreach (var folder in Directory.GetDirectories(Path.Combine(Cluster.CheckpointRoot, runId), "step-*"))
        {
            var manifest = CheckpointStore.ReadManifest(folder)!;
            if (long.Parse(manifest.Extra["learner_epoch"], System.Globalization.CultureInfo.InvariantCulture) <= frozenEpoch)
                Assert.True(Directory.GetLastWriteTimeUtc(folder) < frozenAt, $"{folder} of epoch {frozenEpoch} written after the freeze");
        }
        Assert.True(StoredEpoch(runId) > frozenEpoch);
    }

    [Fact]
    public async Task A_generator_silo_frozen_until_the_cluster_declares_it_dead_costs_the_run_nothing()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 12;
        var config = TinyRuns.RefAlign("freeze-generator", steps, checkpointEvery: 4);
        var (twin, runId) = await Runs.StartBesideTwinAsync(client, config, 2);
        // silo-c holds a generator shard (silo-d, the tests' gateway, holds the other).
        var view = await client.GetClusterAsync();
        var c = view.Silos.Single(s => s.Name == "silo-c").Address;
        Assert.Contains(view.Placements, p => p.RunId == runId && p.Kind == "generator" && p.Silo == c);
        var clock = Stopwatch.StartNew();
        Cluster["silo-c"].Freeze();
        TimeSpan declaredDeadAfter;
        // Frozen until the others declare it dead (it leaves their view of active silos): it then wakes into a cluster
        // that has moved on without it.
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
            while ((await client.GetClusterAsync()).Silos.Any(s => s.Name == "silo-c"))
            {
                Assert.True(DateTime.UtcNow < deadline, $"silo-c, frozen, was never declared dead\n{Cluster.Logs(20)}");
                await Task.Delay(200);
            }
            declaredDeadAfter = clock.Elapsed;
        }
        finally { Cluster["silo-c"].Thaw(); }
        var outcome = await Runs.FinishAsync(client, runId);
        output.WriteLine($"generator silo declared dead {declaredDeadAfter.TotalSeconds:F1}s into its freeze; run finished "
            + $"{clock.Elapsed.TotalSeconds:F1}s after the freeze began\n{FailoverRuns.StatusLines(outcome.Events)}");
        FailoverRuns.AssertExactlyAs(twin, outcome, steps);
        Assert.True(await Cluster["silo-c"].ExitedAsync(TimeSpan.FromMinutes(2)), "silo-c still runs after it was thawed");
    }
}
