using System.Collections.Immutable;
using System.Globalization;
using RefAlign.Contracts.Control;

namespace RefAlign.Grains.Lifecycle;

/// <summary>
/// A run's life as one pure function: <see cref="Decide"/> maps (state, event) to (state, actions). No Orleans, no I/O,
/// no clock (times arrive inside events). The run grain is its only caller: it decides each event at once, in one
/// grain turn, and executes the actions in the order decided, so whatever interleaves between two awaits meets a state
/// that already says what happened. Only here does a run's status change. See docs/architecture.md for the diagram.
/// </summary>
public sealed class RunLifecycle(RunTimings timings)
{
    public RunTimings Timings => timings;

    public Decision Decide(RunLifecycleState s, LifecycleEvent e) => e switch
    {
        StartRequested start => s.Status == RunStatus.Pending
            ? Launch(s with { Status = RunStatus.Running, MaxRestarts = start.MaxRestarts, Error = null }, TimeSpan.Zero,
                Note(RunStatus.Running, s.Step, "started"), new Persist(), new Supervise())
            : Same(s),
        StopRequested => Stop(s),
        ResumeRequested => Resume(s),
        AttemptDue due => due.Attempt == s.Attempt && s.Phase == AttemptPhase.Scheduled && s.Status == RunStatus.Running
            ? Do(s with { Phase = AttemptPhase.Live }, new RunAttempt(due.Attempt))
            : Same(s),
        Progressed p => s.Owns(p.Attempt)
            ? Do(s with { Step = p.Step, AllStepsApplied = p.AllApplied, Recovery = null }, new Persist())
            : Same(s),
        LearnerSiloMissing m => s.Owns(m.Attempt) && s.Status == RunStatus.Running
            ? Do(s, Note(s.Status, s.Step, $"waiting: {m.Reason}"), new Persist())
            : Same(s),
        AttemptCompleted c => s.Owns(c.Attempt)
            ? s.Status == RunStatus.Stopping && s.StopBeforeEnd
                ? End(s, RunStatus.Stopped, null, "stopped")
                : End(s, RunStatus.Completed, null, "completed")
            : Same(s),
        AttemptStopped stopped => s.Owns(stopped.Attempt) ? End(s, RunStatus.Stopped, null, "stopped") : Same(s),
        AttemptFailed f => s.Owns(f.Attempt) ? Failed(s with { Phase = AttemptPhase.None }, f.Fault, f.At) : Same(s),
        Reactivated r => Reactivate(s with { Phase = AttemptPhase.None, Recovery = null, StopBeforeEnd = false }, r),
        ReminderTick => s.Status switch
        {
            RunStatus.Pending or RunStatus.Stopped or RunStatus.Completed or RunStatus.Failed => Do(s, new Unsupervise()),
            // A running run whose attempt was never scheduled again (nothing else would start it).
            RunStatus.Running when s.Phase == AttemptPhase.None => Launch(s, TimeSpan.Zero),
            _ => Same(s),
        },
        _ => throw new ArgumentOutOfRangeException(nameof(e), e, "not a lifecycle event"),
    };

    Decision Stop(RunLifecycleState s) => (s.Status, s.Phase) switch
    {
        (RunStatus.Running, AttemptPhase.Live) => Do(s with { Status = RunStatus.Stopping, Phase = AttemptPhase.Cancelling, StopBeforeEnd = !s.AllStepsApplied },
            new CancelAttempt(s.Attempt), Note(RunStatus.Stopping, s.Step, "stopping after the current step"), new Persist()),
        // Nothing is training (a restart is waiting out its backoff): the run stops here.
        (RunStatus.Running, AttemptPhase.Scheduled) => End(s, RunStatus.Stopped, s.Error, "stopped", new CancelAttempt(s.Attempt)),
        (RunStatus.Running, _) => End(s, RunStatus.Stopped, s.Error, "stopped"),
        _ => Same(s),
    };

    static Decision Resume(RunLifecycleState s) => s.Status switch
    {
        RunStatus.Completed => Refuse(s, "has completed; start a new run to train further."),
        RunStatus.Pending => Refuse(s, "was never started."),
        RunStatus.Stopped or RunStatus.Failed => Launch(
            s with { Status = RunStatus.Running, Error = null, Restarts = 0, CountedLostSilos = s.CountedLostSilos.Clear(), StopBeforeEnd = false },
            TimeSpan.Zero,
            // The registry first: were its report lost after the run went on, listings would show the run as ended.
            Note(RunStatus.Running, s.Step, "resumed"), new ReportToRegistry(), new Persist(), new Supervise()),
        _ => Same(s),
    };

    Decision Reactivate(RunLifecycleState s, Reactivated r) => s.Status switch
    {
        // A stop is never lost: it was asked for, and the silo running the loop went away before it finished.
        RunStatus.Stopping => End(s, RunStatus.Stopped, s.Error,
            $"stopped (the silo running it{(r.PreviousSilo is null ? "" : $", {r.PreviousSilo},")} was lost while it was stopping)"),
        // Supervised again first: the previous activation may have gone before its reminder was registered.
        RunStatus.Running => Supervised(Failed(s, r.PreviousSilo is { } previous && previous != r.Here
            ? new Fault(FaultKind.SiloLost, $"the silo hosting the run ({previous}) was lost", previous)
            : new Fault(FaultKind.Transient, "the run's grain was reactivated"), r.At)),
        // In case its end was never reported, or its reminder outlived it.
        RunStatus.Stopped or RunStatus.Completed or RunStatus.Failed => Do(s, new Unsupervise(), new ReportToRegistry()),
        _ => Same(s),
    };

    /// <summary>An attempt failed (or the grain holding it was lost): retry after a backoff, or end the run.</summary>
    Decision Failed(RunLifecycleState s, Fault fault, DateTimeOffset at)
    {
        if (s.Status == RunStatus.Stopping)
            // The stop wins: the run ends stopped, resumable from its latest checkpoint, even if its last one was not written.
            return End(s, RunStatus.Stopped, $"stopped as asked; its final checkpoint was not written ({fault.Description}); a resume continues from the latest checkpoint",
                $"stopped (its final checkpoint was not written: {fault.Description}; a resume continues from the latest checkpoint)", new CountFailedAttempt(fault.Kind));
        if (s.Status != RunStatus.Running) return Same(s);
        if (fault.Kind == FaultKind.Fatal)
            return End(s, RunStatus.Failed, fault.Description, $"failed: {fault.Description}", new CountFailedAttempt(fault.Kind));
        var (counted, n) = Count(s, fault.LostSilo, at);
        var recovery = fault.LostSilo is { } lost ? $"after the loss of silo {lost}"
            : fault.Kind == FaultKind.Stalled ? "after a stalled attempt" : "after a failed attempt";
        if (!counted)
        {
            var delay = timings.Backoff(Math.Max(1, n.Restarts));
            return Launch(n with { Error = fault.Description, Recovery = recovery }, delay, new CountFailedAttempt(fault.Kind),
                Note(RunStatus.Running, n.Step, $"attempt failed: {fault.Description}; the loss of silo {fault.LostSilo} is counted already " +
                    $"(the cluster has not declared it dead yet); retry in {Seconds(delay)}"), new Persist());
        }
        if (n.Restarts > n.MaxRestarts)
        {
            var error = $"failed after {n.Restarts} attempts without progress: {fault.Description}";
            return End(n, RunStatus.Failed, error, error, new CountFailedAttempt(fault.Kind));
        }
        var backoff = timings.Backoff(n.Restarts);
        return Launch(n with { Error = fault.Description, Recovery = recovery }, backoff, new CountFailedAttempt(fault.Kind),
            Note(RunStatus.Running, n.Step, $"attempt failed: {fault.Description}; restart {n.Restarts} of {n.MaxRestarts} in {Seconds(backoff)}"),
            new Persist());
    }

    /// <summary>
    /// Counts a failed attempt; not counted when it failed on a lost silo counted less than the grace ago: until
    /// membership declares a killed silo dead every attempt meets it again, and how long that takes must not decide
    /// whether the run fails. Past the grace the same silo counts again, so a silo that keeps failing still ends the run.
    /// </summary>
    (bool Counted, RunLifecycleState State) Count(RunLifecycleState s, string? lostSilo, DateTimeOffset at)
    {
        if (s.Step > s.RestartStep) s = s with { Restarts = 0, CountedLostSilos = s.CountedLostSilos.Clear() };
        s = s with { RestartStep = s.Step };
        if (lostSilo is not null)
        {
            // A clock behind the one that counted (another silo's) reads as within the grace: nothing is counted twice.
            if (s.CountedLostSilos.TryGetValue(lostSilo, out var counted) && at - counted < timings.LostSiloGrace) return (false, s);
            s = s with { CountedLostSilos = s.CountedLostSilos.SetItem(lostSilo, at) };
        }
        return (true, s with { Restarts = s.Restarts + 1 });
    }

    /// <summary>Schedules a new attempt (numbers only grow) after <paramref name="delay"/>, after <paramref name="first"/>.</summary>
    static Decision Launch(RunLifecycleState s, TimeSpan delay, params LifecycleAction[] first)
    {
        var next = s with { Attempt = s.Attempt + 1, Phase = AttemptPhase.Scheduled };
        return new Decision(next, [.. first, new ScheduleAttempt(next.Attempt, delay)]);
    }

    /// <summary>The run ends with <paramref name="status"/>: durable before it is reported, then unsupervised and its learner let go.</summary>
    static Decision End(RunLifecycleState s, RunStatus status, string? error, string message, params LifecycleAction[] first)
    {
        var ended = s with { Status = status, Phase = AttemptPhase.None, Error = error, Recovery = null, StopBeforeEnd = false };
        return new Decision(ended, [.. first, Note(status, s.Step, message), new Persist(), new Unsupervise(), new ReportToRegistry(), new ReleaseLearner()]);
    }

    static Decision Do(RunLifecycleState s, params LifecycleAction[] actions) => new(s, [.. actions]);

    static Decision Supervised(Decision d) => d.State.Status.IsRunning() ? d with { Actions = d.Actions.Insert(0, new Supervise()) } : d;

    static Decision Same(RunLifecycleState s) => new(s, []);

    static Decision Refuse(RunLifecycleState s, string why) => new(s, [], why);

    static AppendStatusEvent Note(RunStatus status, int step, string message) => new(status, step, message);

    static string Seconds(TimeSpan t) => string.Create(CultureInfo.InvariantCulture, $"{t.TotalSeconds:0.#}s");
}
