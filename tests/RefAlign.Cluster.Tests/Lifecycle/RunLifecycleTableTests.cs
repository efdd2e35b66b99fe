using System.Diagnostics;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Grains.Lifecycle;
using Xunit.Abstractions;

namespace RefAlign.Cluster.Tests.Lifecycle;

/// <summary>
/// The run's lifecycle over every interleaving: from every world reachable from a new run, every event the world allows
/// (requests, reminder ticks, timers, an attempt's news, a late reply, a crash of the grain's silo, and each execution
/// of a pending action, which is where the grain awaits and anything else may arrive) is applied, and the invariants of
/// <see cref="LifecycleWorld"/> are checked after each. The sequences of up to six events from every reachable world
/// are counted as they are explored.
/// </summary>
public sealed class RunLifecycleTableTests(ITestOutputHelper output)
{
    const int SequenceLength = 6;

    [Fact]
    public void Every_interleaving_keeps_the_invariants()
    {
        var clock = Stopwatch.StartNew();
        var start = new LifecycleWorld();
        var index = new Dictionary<string, int> { [start.Key()] = 0 };
        var worlds = new List<LifecycleWorld> { start };
        var edges = new List<List<int>> { new() };
        var broken = new List<string>();
        for (var i = 0; i < worlds.Count && broken.Count <= 20; i++)
        {
            var world = worlds[i];
            foreach (var (name, apply) in world.Next())
            {
                var next = world.Clone();
                foreach (var b in apply(next).Concat(next.Invariants())) broken.Add($"{world.Key()} --{name}--> {b}");
                var key = next.Key();
                if (!index.TryGetValue(key, out var j))
                {
                    index[key] = j = worlds.Count;
                    worlds.Add(next);
                    edges.Add([]);
                }
                edges[i].Add(j);
            }
            Assert.True(worlds.Count < 1_000_000, "the lifecycle's worlds do not close");
        }
        Assert.True(broken.Count == 0, string.Join("\n", broken.Take(6)));

        // Sequences of 1..N events from every reachable world: sequences(w, n) = Σ over its events (1 + sequences(next, n − 1)).
        var counts = new long[worlds.Count];
        for (var length = 1; length <= SequenceLength; length++)
            counts = [.. edges.Select(e => e.Sum(j => 1 + counts[j]))];
        var sequences = counts.Sum();
        var transitions = edges.Sum(e => e.Count);
        output.WriteLine($"{worlds.Count} reachable worlds, {transitions} transitions checked, {sequences} event sequences of length 1–{SequenceLength} " +
            $"from every reachable world; {clock.Elapsed.TotalSeconds:F2} s");
        // Every status and every attempt phase is reached, so no part of the table is vacuous.
        Assert.Equal(Enum.GetValues<RunStatus>().Order(), worlds.Select(w => w.Life.Status).Distinct().Order());
        Assert.Equal(Enum.GetValues<AttemptPhase>().Order(), worlds.Select(w => w.Life.Phase).Distinct().Order());
        Assert.True(sequences > 1_000_000, $"only {sequences} sequences");
    }

    /// <summary>Applies named events in order (each must be possible), checking the invariants after each.</summary>
    static LifecycleWorld Play(LifecycleWorld world, params string[] events)
    {
        foreach (var name in events)
        {
            var (_, apply) = world.Next().FirstOrDefault(n => n.Name == name);
            Assert.True(apply is not null, $"'{name}' cannot happen in {world.Key()}; possible: {string.Join(", ", world.Next().Select(n => n.Name))}");
            var broken = apply!(world).Concat(world.Invariants()).ToList();
            Assert.True(broken.Count == 0, $"after '{name}': {string.Join("; ", broken)}");
        }
        return world;
    }

    static LifecycleWorld Drain(LifecycleWorld world)
    {
        while (world.Pending.Count > 0) Play(world, "execute");
        return world;
    }

    /// <summary>A run with attempt 1 training (start, its actions, the timer, the attempt's launch).</summary>
    static LifecycleWorld Training()
    {
        var world = Drain(Play(new LifecycleWorld(), "start"));
        return Drain(Play(world, "timer1"));
    }

    [Fact]
    public void A_stop_that_arrives_while_a_failure_is_being_counted_ends_the_run_stopped()
    {
        // The attempt fails on a lost silo; before the failure's own actions (its event, its write, the restart's timer)
        // have run, the operator's stop arrives. The restart must not train on under a lost stop.
        var world = Play(Training(), "lost1", "execute", "stop");
        Drain(world);
        Assert.Equal(RunStatus.Stopped, world.Life.Status);
        Assert.Empty(world.Timers);
        Assert.Empty(world.Running);
        Assert.False(world.Supervised);
    }

    [Fact]
    public void A_resume_that_arrives_while_the_run_ends_keeps_its_reminder_and_its_learner()
    {
        // The run fails; its end (write, unsupervise, report, release the learner) is under way when a resume arrives.
        var world = Play(Training(), "fatal1", "execute", "execute", "resume");
        Assert.Equal(RunStatus.Running, world.Life.Status);
        Drain(world);
        Assert.True(world.Supervised);
        // The end's unsupervise and learner release ran before the resume's supervise and its attempt.
        var order = world.Executed;
        Assert.True(order.LastIndexOf(nameof(Unsupervise)) < order.LastIndexOf(nameof(Supervise)), string.Join(",", order));
        Assert.True(order.LastIndexOf(nameof(ReleaseLearner)) < order.LastIndexOf(nameof(ScheduleAttempt)), string.Join(",", order));
        Play(world, "timer2");
        Drain(world);
        Assert.Single(world.Running);
    }

    [Fact]
    public void A_stop_during_a_failover_ends_stopped_even_when_its_final_checkpoint_fails()
    {
        // Stop asked while training; the attempt's final checkpoint meets the lost learner silo.
        var world = Drain(Play(Training(), "step1", "stop"));
        Assert.Equal(RunStatus.Stopping, world.Life.Status);
        Drain(Play(world, "lost1"));
        Assert.Equal(RunStatus.Stopped, world.Life.Status);
        Assert.Contains("a resume continues from the latest checkpoint", world.Life.Error);
        Drain(Play(world, "resume"));
        Assert.Equal(RunStatus.Running, world.Life.Status);
    }

    [Fact]
    public void A_reminder_that_fires_twice_and_a_reactivation_on_a_silo_whose_clock_is_behind_do_nothing_twice()
    {
        var world = Play(Training(), "tick", "tick");
        Assert.Single(world.Running);
        Assert.Empty(world.Timers);
        Assert.Empty(world.Pending);
        // The grain's silo dies and the run comes back elsewhere: the loss is counted once.
        Drain(Play(world, "crash", "reactivate"));
        Assert.Equal(1, world.Life.Restarts);
        // A clock behind the one that counted the learner's silo: a failure naming that silo is not counted again.
        var lifecycle = new RunLifecycle(new RunTimings());
        var lost = new Fault(FaultKind.SiloLost, "learner lost", "S1");
        var live = world.Life with { Status = RunStatus.Running, Phase = AttemptPhase.Live, Restarts = 0, RestartStep = world.Life.Step };
        var first = lifecycle.Decide(live, new AttemptFailed(live.Attempt, lost, DateTimeOffset.UnixEpoch.AddHours(1))).State;
        var again = first with { Attempt = first.Attempt, Phase = AttemptPhase.Live };
        var second = lifecycle.Decide(again, new AttemptFailed(again.Attempt, lost, DateTimeOffset.UnixEpoch)).State;
        Assert.Equal(first.Restarts, second.Restarts);
    }

    [Fact]
    public void Consecutive_failures_past_max_restarts_fail_the_run_and_a_step_in_between_starts_the_count_again()
    {
        var world = Drain(Play(Training(), "transient1"));
        Assert.Equal(1, world.Life.Restarts);
        // A step of the next attempt resets the count: its failure is the first again.
        world = Drain(Play(world, "timer2"));
        world = Drain(Play(world, "step2", "transient2"));
        Assert.Equal(1, world.Life.Restarts);
        Assert.Equal(RunStatus.Running, world.Life.Status);
        // Two in a row with max_restarts 1: the run fails, with a sentence that says so.
        world = Drain(Play(world, "timer3"));
        world = Drain(Play(world, "stalled3"));
        Assert.Equal(RunStatus.Failed, world.Life.Status);
        Assert.StartsWith("failed after 2 attempts without progress: no step finished", world.Life.Error);
    }
}
