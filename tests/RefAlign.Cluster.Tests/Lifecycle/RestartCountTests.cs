using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Grains.Lifecycle;

namespace RefAlign.Cluster.Tests.Lifecycle;

/// <summary>
/// How a run counts its failed attempts against <c>distributed.max_restarts</c>: one lost silo is one fault, however many
/// attempts meet it before membership declares it dead.
/// </summary>
public sealed class RestartCountTests
{
    static readonly RunLifecycle Lifecycle = new(new RunTimings());
    static readonly TimeSpan Grace = new RunTimings().LostSiloGrace;
    static readonly DateTimeOffset T0 = new(2026, 11, 27, 6, 0, 0, TimeSpan.Zero);

    /// <summary>A run whose attempt trains at <paramref name="step"/>, with room for many restarts.</summary>
    static RunLifecycleState Live(int step, RunLifecycleState? from = null) =>
        (from ?? new RunLifecycleState { MaxRestarts = 100 }) with { Status = RunStatus.Running, Step = step, Phase = AttemptPhase.Live };

    /// <summary>The attempt fails (and is restarted); returns the state with the next attempt training.</summary>
    static RunLifecycleState Fail(RunLifecycleState s, string? silo, DateTimeOffset at)
    {
        var fault = new Fault(silo is null ? FaultKind.Transient : FaultKind.SiloLost, "lost", silo);
        var d = Lifecycle.Decide(s, new AttemptFailed(s.Attempt, fault, at));
        Assert.Contains(d.Actions, a => a is ScheduleAttempt);
        return d.State with { Phase = AttemptPhase.Live };
    }

    [Fact]
    public void Attempts_that_meet_a_counted_lost_silo_again_within_the_grace_count_nothing()
    {
        var s = Live(2);
        s = Fail(s, "S127.0.0.1:1:1", T0);
        s = Fail(s, "S127.0.0.1:1:1", T0.AddSeconds(5));
        s = Fail(s, "S127.0.0.1:1:1", T0.AddSeconds(15));
        Assert.Equal(1, s.Restarts);
        // Another silo lost is another fault; so is the first one's address after a restart (a new generation).
        s = Fail(s, "S127.0.0.2:2:1", T0.AddSeconds(20));
        s = Fail(s, "S127.0.0.1:1:2", T0.AddSeconds(25));
        Assert.Equal(3, s.Restarts);
    }

    [Fact]
    public void Past_the_grace_the_same_silo_counts_again_so_a_run_that_keeps_failing_on_it_still_fails()
    {
        var s = Live(0);
        for (var i = 0; i < 6; i++) s = Fail(s, "S127.0.0.1:1:1", T0 + i * Grace);
        Assert.Equal(6, s.Restarts);
    }

    [Fact]
    public void Failures_that_name_no_silo_always_count_and_a_finished_step_starts_over()
    {
        var s = Live(3);
        s = Fail(s, null, T0);
        s = Fail(s, null, T0);
        s = Fail(s, "S127.0.0.1:1:1", T0);
        Assert.Equal(3, s.Restarts);

        s = Live(4, s);
        s = Fail(s, "S127.0.0.1:1:1", T0.AddSeconds(1)); // counted again: progress in between
        Assert.Equal(1, s.Restarts);
        var resumed = Lifecycle.Decide(s with { Status = RunStatus.Failed, Phase = AttemptPhase.None }, new ResumeRequested()).State;
        Assert.Equal(0, resumed.Restarts);
        Assert.Empty(resumed.CountedLostSilos);
    }
}
