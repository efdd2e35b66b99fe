using System.Collections.Immutable;
using RefAlign.Contracts.Control;

namespace RefAlign.Grains.Lifecycle;

/// <summary>Where the run's current attempt (one pass of the training loop) stands.</summary>
public enum AttemptPhase
{
    /// <summary>No attempt: the run has not started, has ended, or its grain was just reactivated.</summary>
    None,

    /// <summary>A timer will start the attempt (after a backoff, or at once).</summary>
    Scheduled,

    /// <summary>The attempt's loop is training.</summary>
    Live,

    /// <summary>The attempt was asked to stop after its current step and has not ended yet.</summary>
    Cancelling,
}

/// <summary>
/// What <see cref="RunLifecycle.Decide"/> needs of a run. The durable part (status, progress, failure count, error)
/// mirrors the grain's stored state; the attempt and recovery fields live only as long as the grain's activation.
/// </summary>
public sealed record RunLifecycleState
{
    public RunStatus Status { get; init; } = RunStatus.Pending;

    /// <summary>Steps applied, as the attempts reported them (moves back after a checkpoint restore).</summary>
    public int Step { get; init; }

    /// <summary>The last step of the run was applied.</summary>
    public bool AllStepsApplied { get; init; }

    /// <summary><c>distributed.max_restarts</c>: consecutive failed attempts the run survives.</summary>
    public int MaxRestarts { get; init; }

    /// <summary>Consecutive failed attempts without a step applied in between.</summary>
    public int Restarts { get; init; }

    /// <summary><see cref="Step"/> at the last counted failure: a later step makes the next failure the first again.</summary>
    public int RestartStep { get; init; } = -1;

    /// <summary>The lost silos <see cref="Restarts"/> counts already, with when each was counted.</summary>
    public ImmutableDictionary<string, DateTimeOffset> CountedLostSilos { get; init; } = ImmutableDictionary<string, DateTimeOffset>.Empty;

    /// <summary>A sentence for the operator: why the last attempt failed, or why the run ended as it did.</summary>
    public string? Error { get; init; }

    /// <summary>The current attempt's number; numbers only grow within an activation, so an old attempt's news is told apart.</summary>
    public long Attempt { get; init; }

    public AttemptPhase Phase { get; init; }

    /// <summary>A stop was asked for before the last step was applied: the run ends stopped even if that step lands.</summary>
    public bool StopBeforeEnd { get; init; }

    /// <summary>How the next attempt recovers ("after the loss of silo …"), for its first event; null on a plain start.</summary>
    public string? Recovery { get; init; }

    /// <summary>True when <paramref name="attempt"/> is the attempt that trains now (its news counts).</summary>
    public bool Owns(long attempt) => attempt == Attempt && Phase is AttemptPhase.Live or AttemptPhase.Cancelling;
}

/// <summary>Something that happened to a run: a request, the news of an attempt, or the runtime's doing.</summary>
public abstract record LifecycleEvent;

public sealed record StartRequested(int MaxRestarts) : LifecycleEvent;

public sealed record StopRequested : LifecycleEvent;

public sealed record ResumeRequested : LifecycleEvent;

/// <summary>A scheduled attempt's timer fired.</summary>
public sealed record AttemptDue(long Attempt) : LifecycleEvent;

/// <summary>The attempt applied (or, after a checkpoint restore, went back to) step <paramref name="Step"/>.</summary>
public sealed record Progressed(long Attempt, int Step, bool AllApplied) : LifecycleEvent;

/// <summary>The attempt found no learner silo in the cluster and waits for one.</summary>
public sealed record LearnerSiloMissing(long Attempt, string Reason) : LifecycleEvent;

public sealed record AttemptCompleted(long Attempt) : LifecycleEvent;

/// <summary>The attempt saw its stop and ended after checkpointing its finished steps.</summary>
public sealed record AttemptStopped(long Attempt) : LifecycleEvent;

public sealed record AttemptFailed(long Attempt, Fault Fault, DateTimeOffset At) : LifecycleEvent;

/// <summary>The grain was activated with stored state (its previous activation, on <paramref name="PreviousSilo"/>, is gone).</summary>
public sealed record Reactivated(string? PreviousSilo, string Here, DateTimeOffset At) : LifecycleEvent;

public sealed record ReminderTick : LifecycleEvent;

/// <summary>What the grain does for a decision, in order.</summary>
public abstract record LifecycleAction;

/// <summary>A status event in the run's log, with the status and step it was decided at.</summary>
public sealed record AppendStatusEvent(RunStatus Status, int Step, string Message) : LifecycleAction;

/// <summary>Writes the run's state (and publishes the events it holds).</summary>
public sealed record Persist : LifecycleAction;

/// <summary>Registers the supervision reminder.</summary>
public sealed record Supervise : LifecycleAction;

public sealed record Unsupervise : LifecycleAction;

/// <summary>Tells the run registry where the run stands (its final summary once it has ended).</summary>
public sealed record ReportToRegistry : LifecycleAction;

/// <summary>Starts a timer that raises <see cref="AttemptDue"/> after <paramref name="Delay"/>.</summary>
public sealed record ScheduleAttempt(long Attempt, TimeSpan Delay) : LifecycleAction;

/// <summary>Runs the attempt's training loop (the timer that raised <see cref="AttemptDue"/> does).</summary>
public sealed record RunAttempt(long Attempt) : LifecycleAction;

/// <summary>Stops a scheduled attempt's timer, or asks a live attempt to stop after its current step.</summary>
public sealed record CancelAttempt(long Attempt) : LifecycleAction;

/// <summary>Lets the run's learner go (it frees its memory a little later).</summary>
public sealed record ReleaseLearner : LifecycleAction;

/// <summary>Counts a failed attempt in the run's telemetry.</summary>
public sealed record CountFailedAttempt(FaultKind Kind) : LifecycleAction;

/// <summary>The new state, the actions to execute in order, and for a request that cannot be granted the reason.</summary>
public sealed record Decision(RunLifecycleState State, ImmutableArray<LifecycleAction> Actions, string? Refusal = null);
