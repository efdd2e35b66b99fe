using RefAlign.Grains;

namespace RefAlign.Silo.Tests;

/// <summary>
/// How a run counts its failed attempts against <c>distributed.max_restarts</c>: one lost silo is one fault, however many
/// attempts meet it before membership declares it dead.
/// </summary>
public sealed class RestartCountTests
{
    static readonly TimeSpan Grace = TimeSpan.FromMinutes(2);
    static readonly DateTimeOffset T0 = new(2026, 11, 27, 6, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Attempts_that_meet_a_counted_lost_silo_again_within_the_grace_count_nothing()
    {
        var s = new RunState { Step = 2 };
        Assert.True(s.CountFailure("S127.0.0.1:1:1", T0, Grace));
        Assert.False(s.CountFailure("S127.0.0.1:1:1", T0.AddSeconds(5), Grace));
        Assert.False(s.CountFailure("S127.0.0.1:1:1", T0.AddSeconds(15), Grace));
        Assert.Equal(1, s.Restarts);
        // Another silo lost is another fault; so is the first one's address after a restart (a new generation).
        Assert.True(s.CountFailure("S127.0.0.2:2:1", T0.AddSeconds(20), Grace));
        Assert.True(s.CountFailure("S127.0.0.1:1:2", T0.AddSeconds(25), Grace));
        Assert.Equal(3, s.Restarts);
    }

    [Fact]
    public void Past_the_grace_the_same_silo_counts_again_so_a_run_that_keeps_failing_on_it_still_fails()
    {
        var s = new RunState { Step = 0 };
        var counted = Enumerable.Range(0, 6).Count(i => s.CountFailure("S127.0.0.1:1:1", T0 + i * Grace, Grace));
        Assert.Equal(6, counted);
        Assert.Equal(6, s.Restarts);
    }

    [Fact]
    public void Failures_that_name_no_silo_always_count_and_a_finished_step_starts_over()
    {
        var s = new RunState { Step = 3 };
        Assert.True(s.CountFailure(null, T0, Grace));
        Assert.True(s.CountFailure(null, T0, Grace));
        Assert.True(s.CountFailure("S127.0.0.1:1:1", T0, Grace));
        Assert.Equal(3, s.Restarts);

        s.Step = 4;
        Assert.True(s.CountFailure("S127.0.0.1:1:1", T0.AddSeconds(1), Grace)); // counted again: progress in between
        Assert.Equal(1, s.Restarts);
        s.ResetRestarts();
        Assert.Equal(0, s.Restarts);
        Assert.Empty(s.CountedLostSilos);
    }
}
