using System.Diagnostics;
using System.Security.Cryptography;
using RefAlign.Client;
using RefAlign.Compute.Training.Checkpoints;
using Xunit.Abstractions;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// The shared real cluster of the failover tests: Redis and four silo processes. A = learner + reference, B = learner,
/// C = generator + scorer + reference, D = generator + scorer (the tests' gRPC gateway, never killed).
/// </summary>
public sealed class FailoverClusterFixture : IAsyncLifetime
{
    public DemoWorkspace Workspace { get; } = new("refalign-failover-");

    public ProcessCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Cluster = await ProcessCluster.StartAsync(Workspace,
            ("silo-a", "learner,reference"), ("silo-b", "learner"), ("silo-c", "generator,scorer,reference"), ("silo-d", "generator,scorer"));

    /// <summary>Starts again any silo a test killed, so the next test finds the whole cluster.</summary>
    public async Task HealAsync()
    {
        await Task.WhenAll(Cluster.Names.Where(n => !Cluster[n].IsRunning).ToList().Select(n => Cluster[n].StartAsync(TimeSpan.FromMinutes(3))));
        await Cluster.WaitForMembersAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        Workspace.Dispose();
    }
}

/// <summary>
/// The classes that kill, freeze and restart the silos of one shared process cluster: one test at a time, and alone, so
/// that death declarations and recoveries are not raced by other process clusters' start-up.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FailoverCollection : ICollectionFixture<FailoverClusterFixture>
{
    public const string Name = "failover";
}

/// <summary>Real silo processes killed with SIGKILL mid-run: runs finish by themselves, exactly as without the fault.</summary>
[Collection(FailoverCollection.Name)]
[Trait("Tier", "Process")]
public sealed class FailoverTests(FailoverClusterFixture fixture, ITestOutputHelper output) : IAsyncLifetime
{
    ProcessCluster Cluster => fixture.Cluster;

    public Task InitializeAsync() => fixture.HealAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    FailoverRuns Runs => new(Cluster);

    Task<string> StartAsync(RefAlignClient client, string config) => client.StartRunAsync(config);

    Task<FailoverRuns.Outcome> FinishAsync(RefAlignClient client, string runId, List<RunEvent>? events = null, TimeSpan? timeout = null) =>
        Runs.FinishAsync(client, runId, events, timeout);

    static string StatusLines(IEnumerable<RunEvent> events) => FailoverRuns.StatusLines(events);

    static Task<List<RunEvent>> EventsAsync(RefAlignClient client, string runId, int seconds = 5) => FailoverRuns.EventsAsync(client, runId, seconds);

    Task AtStepAsync(RefAlignClient client, string runId, int step) => Runs.AtStepAsync(client, runId, step);

    [Fact]
    public async Task Shards_spread_over_the_generator_silos_and_a_killed_one_costs_no_rewind()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 10;
        var baseline = await Runs.TwinAsync(client, TinyRuns.RefAlign("spread-base", steps, checkpointEvery: 5));

        var runId = await StartAsync(client, TinyRuns.RefAlign("spread", steps, checkpointEvery: 5));
        await AtStepAsync(client, runId, 2);
        var c = await client.GetClusterAsync();
        var shards = c.Placements.Where(p => p.RunId == runId && p.Kind == "generator").Select(p => p.Silo).ToList();
        Assert.Equal(2, shards.Count);
        Assert.Equal(2, shards.Distinct().Count()); // never two shards on one silo while a generator silo has none

        var killedAt = Stopwatch.StartNew();
        await Cluster["silo-c"].KillAsync();
        var outcome = await FinishAsync(client, runId);
        output.WriteLine($"generator silo killed at step ≥ 2; run finished {killedAt.Elapsed.TotalSeconds:F1}s later");

        FailoverRuns.AssertExactlyAs(baseline, outcome, steps);
        Assert.DoesNotContain(outcome.Events, e => e.Message == "replay");
        Assert.Equal(Enumerable.Range(1, outcome.Events.Count).Select(i => (long)i), outcome.Events.Select(e => e.Sequence));
    }

    [Fact]
    public async Task A_killed_learner_silo_resumes_from_the_checkpoint_on_the_other_learner_silo()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 10;
        var baseline = await Runs.TwinAsync(client, TinyRuns.SrDpo("learner-base", steps, checkpointEvery: 3));

        var runId = await StartAsync(client, TinyRuns.SrDpo("learner-loss", steps, checkpointEvery: 3));
        await AtStepAsync(client, runId, 5);
        var learnerSilo = await Cluster.PlacedAsync(client, "learner", runId);
        Assert.Contains(learnerSilo, new[] { "silo-a", "silo-b" });
        var killedAt = Stopwatch.StartNew();
        await Cluster[learnerSilo].KillAsync();
        var outcome = await FinishAsync(client, runId);
        output.WriteLine($"learner silo {learnerSilo} killed at step ≥ 5; run finished {killedAt.Elapsed.TotalSeconds:F1}s later");

        // Resumed by itself on the other learner silo, from its latest checkpoint, and ended bitwise where the uninterrupted run did.
        // A kill just after a checkpoint step the run had reported resumes "continuing at" that step, otherwise "replaying
        // from" it; either way the learner journal holds the restore.
        var recovered = Assert.Single(outcome.Events, e => e.Kind == RunEventKind.Status && e.Message!.StartsWith("recovered", StringComparison.Ordinal));
        var from = System.Text.RegularExpressions.Regex.Match(recovered.Message!, @"(?:replaying from checkpoint step|continuing at step) (\d+)");
        Assert.True(from.Success, recovered.Message);
        Assert.True(int.Parse(from.Groups[1].Value) is var c && c > 0 && c % 3 == 0, recovered.Message);
        Assert.Contains(outcome.Journal, e => e.Kind == "restore" && e.Step == c);
        output.WriteLine(recovered.Message);
        FailoverRuns.AssertExactlyAs(baseline, outcome, steps);
        Assert.Equal(Enumerable.Range(1, outcome.Events.Count).Select(i => (long)i), outcome.Events.Select(e => e.Sequence));
    }

    /// <summary>A running silo that hosts neither the run nor its learner, to talk through while those fail.</summary>
    async Task<string> BystanderAsync(RefAlignClient client, string runId)
    {
        var busy = new[] { await Cluster.PlacedAsync(client, "run", runId), await Cluster.PlacedAsync(client, "learner", runId) };
        return Cluster.Names.First(n => Cluster[n].IsRunning && !busy.Contains(n));
    }

    [Fact]
    public async Task The_run_grain_s_silo_killed_mid_run_the_run_continues_elsewhere_and_its_watcher_misses_nothing()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 12;
        var baseline = await Runs.TwinAsync(client, TinyRuns.RefAlign("host-base", steps, checkpointEvery: 4));

        var runId = await StartAsync(client, TinyRuns.RefAlign("host-loss", steps, checkpointEvery: 4));
        await AtStepAsync(client, runId, 2);
        var host = await Cluster.PlacedAsync(client, "run", runId);
        using var watcher = Cluster.Client(await BystanderAsync(client, runId));
        // Watched live, through a silo that stays, from before the loss to the end.
        var events = new List<RunEvent>();
        var watch = Task.Run(async () => { await foreach (var e in watcher.WatchRunAsync(runId, 0)) events.Add(e); });
        await AtStepAsync(client, runId, 4);
        var killedAt = Stopwatch.StartNew();
        await Cluster[host].KillAsync();
        await watch.WaitAsync(TimeSpan.FromMinutes(4));
        output.WriteLine($"run host {host} killed; run finished {killedAt.Elapsed.TotalSeconds:F1}s later");

        var outcome = await FinishAsync(watcher, runId, events);
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Sequence));
        Assert.Contains(events, e => e.Message?.StartsWith($"recovered after the loss of silo", StringComparison.Ordinal) == true);
        FailoverRuns.AssertExactlyAs(baseline, outcome, steps);
    }

    [Fact]
    public async Task SIGTERM_on_the_learner_silo_checkpoints_at_once_and_the_run_continues_without_replay()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 12;
        var baseline = await Runs.TwinAsync(client, TinyRuns.SrDpo("drain-base", steps, checkpointEvery: 50));

        var runId = await StartAsync(client, TinyRuns.SrDpo("drain", steps, checkpointEvery: 50));
        await AtStepAsync(client, runId, 4);
        var learnerSilo = await Cluster.PlacedAsync(client, "learner", runId);
        var drainedAt = Stopwatch.StartNew();
        Assert.Equal(0, await Cluster[learnerSilo].TerminateAsync());
        output.WriteLine($"learner silo {learnerSilo} drained and exited in {drainedAt.Elapsed.TotalSeconds:F1}s");
        var outcome = await FinishAsync(client, runId);

        // The drained learner wrote a checkpoint of the step it had reached; the run picked up there: nothing ran twice.
        Assert.DoesNotContain(outcome.Events, e => e.Message == "replay");
        Assert.Contains(Directory.GetDirectories(Path.Combine(Cluster.CheckpointRoot, runId)), d => Path.GetFileName(d) != "step-000012");
        FailoverRuns.AssertExactlyAs(baseline, outcome, steps);
    }

    [Fact]
    public async Task With_no_learner_silo_left_the_run_waits_visibly_until_one_joins()
    {
        using var client = Cluster.Client("silo-d");
        var runId = await StartAsync(client, TinyRuns.RefAlign("no-learner", 8, checkpointEvery: 2));
        await AtStepAsync(client, runId, 2);
        await Cluster["silo-a"].KillAsync();
        await Cluster["silo-b"].KillAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        List<RunEvent> seen;
        while (!(seen = await EventsAsync(client, runId, seconds: 2)).Any(e => e.Message?.StartsWith("waiting: no active silo has the role 'learner'", StringComparison.Ordinal) == true))
        {
            // CI keeps nothing but this message: say what the run did say, and what the silos logged.
            Assert.True(DateTime.UtcNow < deadline, $"the run never said it was waiting for a learner silo; it said:\n" +
                $"{StatusLines(seen)}\n{Cluster.Logs()}");
            await Task.Delay(500);
        }
        Assert.Equal(RunStatus.Running, (await client.GetRunAsync(runId)).Status);
        await Cluster["silo-b"].StartAsync();
        var outcome = await FinishAsync(client, runId);
        output.WriteLine(StatusLines(outcome.Events));
        Assert.Equal(8, outcome.Summary.Step);
        Assert.Equal(Enumerable.Range(0, 8), outcome.Lineage);
    }

    [Theory]
    [InlineData("generator", "generator,scorer")] // a RefAlign run's rollout shards
    [InlineData("reference", "reference")]        // a Sr-DPO run's reference-model shards
    public async Task A_silo_that_joins_mid_run_takes_shards_at_the_next_step_and_one_that_leaves_gives_them_up(string kind, string roles)
    {
        using var client = Cluster.Client("silo-d");
        // Long enough to outlast a silo's start and its leave; stopped once the shards have moved both ways.
        var runId = await StartAsync(client, kind == "generator"
            ? TinyRuns.RefAlign("join", 2000, checkpointEvery: 50, shards: 3, batchSize: 6)
            : TinyRuns.SrDpo("join-reference", 2000, checkpointEvery: 50, shards: 3));
        await AtStepAsync(client, runId, 2);
        async Task<Dictionary<string, int>> ShardsPerSilo()
        {
            var c = await client.GetClusterAsync();
            var names = c.Silos.ToDictionary(s => s.Address, s => s.Name);
            return c.Placements.Where(p => p.RunId == runId && p.Kind == kind)
                .GroupBy(p => names.GetValueOrDefault(p.Silo, p.Silo)).ToDictionary(g => g.Key, g => g.Count());
        }
        async Task Until(Func<Dictionary<string, int>, bool> done, string what)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
            Dictionary<string, int> now;
            while (!done(now = await ShardsPerSilo()))
            {
                if (DateTime.UtcNow >= deadline)
                    Assert.Fail($"{what}: shards per silo {string.Join(", ", now.Select(kv => $"{kv.Key}={kv.Value}"))}\n{StatusLines(await EventsAsync(client, runId))}\n{Cluster.Logs(15)}");
                await Task.Delay(250);
            }
        }
        // Three shards, two silos of their role: one holds two.
        await Until(s => s.Count == 2 && s.Values.Order().SequenceEqual([1, 2]), $"two {kind} silos");
        await Cluster.AddSiloAsync("silo-e", roles);
        try
        {
            await Until(s => s.Count == 3 && s.Values.All(n => n == 1), "after silo-e joined");
        }
        finally
        {
            await Cluster.RemoveSiloAsync("silo-e");
        }
        await Until(s => s.Count == 2 && !s.ContainsKey("silo-e"), "after silo-e left");
        await client.StopRunAsync(runId);
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        RunSummary run;
        while ((run = await client.GetRunAsync(runId)).Status != RunStatus.Stopped)
        {
            Assert.True(DateTime.UtcNow < deadline && run.Status is RunStatus.Running or RunStatus.Stopping, $"{run.Status}: {run.Error}");
            await Task.Delay(200);
        }
        var journal = AppliedStepJournal.Read(Path.Combine(Cluster.CheckpointRoot, runId, AppliedStepJournal.FileName));
        Assert.Equal(Enumerable.Range(0, run.Step), AppliedStepJournal.Lineage(journal));
    }

    [Fact]
    public async Task Redis_killed_and_restarted_mid_run_pauses_the_run_and_loses_nothing()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 10;
        var baseline = await Runs.TwinAsync(client, TinyRuns.RefAlign("redis-base", steps, checkpointEvery: 5));
        var runId = await StartAsync(client, TinyRuns.RefAlign("redis-loss", steps, checkpointEvery: 5));
        var events = new List<RunEvent>();
        var watch = Task.Run(async () => { await foreach (var e in client.WatchRunAsync(runId, 0)) events.Add(e); });
        await AtStepAsync(client, runId, 3);
        await Cluster.Redis.KillAsync();
        // The outage's length is the fault itself.
        await Task.Delay(TimeSpan.FromSeconds(5));
        await Cluster.Redis.StartAsync();
        var backAt = DateTimeOffset.UtcNow;
        await watch.WaitAsync(TimeSpan.FromMinutes(4));
        var next = events.Where(e => e.Kind == RunEventKind.Step && e.Time > backAt).Select(e => e.Time).DefaultIfEmpty(backAt).Min();
        output.WriteLine($"Redis down 5 s; first step completed {(next - backAt).TotalSeconds:F1}s after it came back");
        var outcome = await FinishAsync(client, runId, events);
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Sequence));
        FailoverRuns.AssertExactlyAs(baseline, outcome, steps);
    }

    [Fact]
    public async Task A_run_whose_learner_silo_dies_on_every_attempt_fails_after_max_restarts()
    {
        using var client = Cluster.Client("silo-d");
        // Slow enough steps that the learner's silo can be taken down before any step of an attempt finishes.
        var poison = TinyRuns.RefAlign("poison", 20, checkpointEvery: 5, batchSize: 32, numSamples: 8, maxNewTokens: 128, maxRestarts: 2);
        var runId = await StartAsync(client, poison);
        var kills = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(6);
        // A killed silo restarts in the background: the next attempt may land on the other learner silo meanwhile and
        // must be taken down as promptly.
        var restarts = new Dictionary<string, Task>();
        RunSummary run;
        while (!(run = await client.GetRunAsync(runId)).Status.IsFinal())
        {
            Assert.True(DateTime.UtcNow < deadline, $"still {run.Status} after {kills} kills");
            Assert.True(run.Step == 0, $"step {run.Step} finished after {kills} kills\n{Cluster.Logs()}");
            if (await Cluster.WhereAsync(client, "learner", runId) is { } silo && Cluster[silo].IsRunning
                && restarts.GetValueOrDefault(silo, Task.CompletedTask).IsCompleted)
            {
                await Cluster[silo].KillAsync();
                kills++;
                restarts[silo] = Cluster[silo].StartAsync(TimeSpan.FromMinutes(3));
            }
            await Task.Delay(50);
        }
        await Task.WhenAll(restarts.Values);
        output.WriteLine($"{kills} kills; {run.Error}");
        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Equal(0, run.Step);
        var last = (await EventsAsync(client, runId, seconds: 2)).Last(e => e.Kind == RunEventKind.Status);
        Assert.StartsWith("failed after 3 attempts without progress", last.Message);
        // The cluster is fine: the next run completes.
        var next = await FinishAsync(client, await StartAsync(client, TinyRuns.RefAlign("after-poison", 4, checkpointEvery: 2)));
        Assert.Equal(4, next.Summary.Step);
    }

    [Fact]
    public async Task A_pipelined_run_resumes_exactly_too_its_prefetched_rollouts_are_saved_with_each_checkpoint()
    {
        using var client = Cluster.Client("silo-d");
        const int steps = 12;
        var config = (string name) => TinyRuns.RefAlign(name, steps, checkpointEvery: 4, mode: "pipelined");
        var baseline = await Runs.TwinAsync(client, config("pipe-base"));

        var runId = await StartAsync(client, config("pipe-loss"));
        await AtStepAsync(client, runId, 6);
        var learnerSilo = await Cluster.PlacedAsync(client, "learner", runId);
        await Cluster[learnerSilo].KillAsync();
        var outcome = await FinishAsync(client, runId);

        Assert.Contains(outcome.Events, e => e.Kind == RunEventKind.Status && e.Message?.StartsWith("recovered", StringComparison.Ordinal) == true);
        Assert.True(File.Exists(Path.Combine(Cluster.CheckpointRoot, runId, "step-000004", "prefetch.json"))
            || File.Exists(Path.Combine(Cluster.CheckpointRoot, runId, "step-000008", "prefetch.json")), "no checkpoint holds the prefetched rollouts");
        FailoverRuns.AssertExactlyAs(baseline, outcome, steps);
    }

    [Fact]
    public async Task After_a_full_cluster_restart_a_running_run_resumes_by_itself_from_its_checkpoint()
    {
        const int steps = 12;
        string runId;
        using (var client = Cluster.Client("silo-d"))
        {
            runId = await StartAsync(client, TinyRuns.RefAlign("full-restart", steps, checkpointEvery: 3));
            await AtStepAsync(client, runId, 5);
        }
        // Every silo at once, as a power cut would; Redis (membership, state, reminders) and the shared disk stay.
        foreach (var name in Cluster.Names) await Cluster[name].KillAsync();
        var restartedAt = Stopwatch.StartNew();
        // All at once, as an orchestrator does: each new silo supersedes its dead predecessor at the same address.
        await Task.WhenAll(Cluster.Names.Select(name => Cluster[name].StartAsync(TimeSpan.FromMinutes(3))));
        await Cluster.WaitForMembersAsync();
        using var after = Cluster.Client("silo-d");
        // Nobody steers the run: its supervision reminder brings it back. This short run may finish between two polls,
        // so a finished run counts as back too (FinishAsync checks how it got there).
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        var (views, slowestView) = (0, TimeSpan.Zero);
        async Task<bool> LearnerPlaced()
        {
            // How long a view takes right after the restart: before ended runs were listed from the registry, each run
            // of the suite was activated anew for its summary, and one view took past 30 s.
            var timer = Stopwatch.StartNew();
            var placed = (await after.GetClusterAsync()).Placements.Any(p => p.RunId == runId && p.Kind == "learner");
            views++;
            if (timer.Elapsed > slowestView) slowestView = timer.Elapsed;
            return placed;
        }
        while (!await LearnerPlaced() && !(await after.ListRunsAsync()).Any(r => r.RunId == runId && r.Status == RunStatus.Completed))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the run did not come back by itself\n{Cluster.Logs()}");
            await Task.Delay(500);
        }
        output.WriteLine($"run back {restartedAt.Elapsed.TotalSeconds:F1}s after the silos were started again; " +
            $"{views} cluster view(s) of {(await after.ListRunsAsync()).Count} runs, the slowest {slowestView.TotalSeconds:F2}s");
        var outcome = await FinishAsync(after, runId);
        // Every learner died with its silo: the new one restored the latest checkpoint written before the cut (step 3, or
        // step 6 when the cut landed just after that checkpoint: the test sees step 5 only by polling), and the run
        // reported its recovery at that step ("replaying from checkpoint step 3 …" or "continuing at step 6").
        var restores = outcome.Journal.Where(e => e.Kind == "restore").Select(e => e.Step).ToList();
        Assert.True(restores.Count >= 2, $"no restore after the restart: {string.Join(", ", restores)}");
        var restored = restores[^1];
        Assert.True(restored > 0 && restored % 3 == 0, $"restored step {restored} is not a checkpoint of the run");
        Assert.Contains(outcome.Events, e => e.Kind == RunEventKind.Status && e.Message is { } m
            && m.StartsWith("recovered", StringComparison.Ordinal) && m.Contains($"step {restored}", StringComparison.Ordinal));
        Assert.Equal(Enumerable.Range(0, steps), outcome.Lineage);
    }

    [Fact]
    public async Task A_stop_is_never_lost_even_when_the_run_s_silo_dies_right_after_it()
    {
        using var client = Cluster.Client("silo-d");
        var runId = await StartAsync(client, TinyRuns.RefAlign("stop-loss", 400, checkpointEvery: 5));
        await AtStepAsync(client, runId, 3);
        var host = await Cluster.PlacedAsync(client, "run", runId);
        using var other = Cluster.Client(await BystanderAsync(client, runId));
        await other.StopRunAsync(runId);
        if (host != "silo-d") await Cluster[host].KillAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        RunSummary run;
        while (true)
        {
            try
            {
                if ((run = await other.GetRunAsync(runId)).Status.IsFinal()) break;
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Unavailable) { }
            Assert.True(DateTime.UtcNow < deadline, "the run never stopped");
            await Task.Delay(250);
        }
        Assert.Equal(RunStatus.Stopped, run.Status);
        Assert.True(run.Step < 400);
        // That it stays stopped (an ended run's reminder only unsupervises it) is RunLifecycleTableTests' to prove, over
        // every interleaving, not a wait's.
    }

    [Fact]
    public async Task A_run_whose_checkpoint_vanished_fails_loudly_instead_of_starting_over()
    {
        using var client = Cluster.Client("silo-d");
        var runId = await StartAsync(client, TinyRuns.RefAlign("lost-checkpoint", 400, checkpointEvery: 2));
        await AtStepAsync(client, runId, 5);
        var learnerSilo = await Cluster.PlacedAsync(client, "learner", runId);
        // The checkpoint root is not shared after all (or was wiped): the next learner finds nothing.
        await Cluster[learnerSilo].KillAsync();
        foreach (var step in Directory.GetDirectories(Path.Combine(Cluster.CheckpointRoot, runId), "step-*")) Directory.Delete(step, recursive: true);
        File.Delete(Path.Combine(Cluster.CheckpointRoot, runId, CheckpointStore.LatestFileName));
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        RunSummary run;
        while (!(run = await client.GetRunAsync(runId)).Status.IsFinal())
        {
            Assert.True(DateTime.UtcNow < deadline, $"still {run.Status} at step {run.Step}");
            await Task.Delay(250);
        }
        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Contains("refusing to start over from an earlier step", run.Error);
        Assert.Contains("Silo:CheckpointRoot", run.Error);
        var journal = AppliedStepJournal.Read(Path.Combine(Cluster.CheckpointRoot, runId, AppliedStepJournal.FileName));
        Assert.Single(journal, e => e.Kind == "apply" && e.Step == 0); // never started over
    }
}
