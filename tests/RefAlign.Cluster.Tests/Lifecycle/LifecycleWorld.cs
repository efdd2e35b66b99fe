using System.Text;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Grains.Lifecycle;

namespace RefAlign.Cluster.Tests.Lifecycle;

/// <summary>
/// The run grain and everything around it, as the lifecycle tables see it: the decided state, the actions not yet
/// executed (each execution is a point where any other event may arrive), the stored state, the reminder, the armed
/// timers and the attempts whose loops run. <see cref="Next"/> lists every event possible here; <see cref="Apply"/>
/// executes one as the grain would and returns the invariants it broke (none, for a correct lifecycle).
/// </summary>
internal sealed class LifecycleWorld
{
    public const int TotalSteps = 2;
    public const int MaxRestarts = 1;
    public const string LostSilo = "S127.0.0.9:11111:1";
    static readonly RunLifecycle Lifecycle = new(new RunTimings());

    public RunLifecycleState Life = new();
    public List<LifecycleAction> Pending = [];
    /// <summary>What Persist last wrote (the lifecycle's durable fields), or null when nothing was written yet.</summary>
    public RunLifecycleState? Stored;
    public bool Supervised;
    /// <summary>The status the run registry was last told.</summary>
    public RunStatus? Reported;
    public bool Crashed;
    public HashSet<long> Timers = [];
    /// <summary>Running attempts with the step each has applied and whether it was asked to stop.</summary>
    public Dictionary<long, (int Step, bool Cancelled)> Running = [];
    public int Clock;
    /// <summary>
    /// A stop was decided since the last start or resume (whether every step had been applied then), and acknowledged:
    /// its state was stored, so its caller heard it was taken. A crash before that is a stop its caller saw fail.
    /// </summary>
    public (bool Asked, bool AllApplied) StopDecided, Stop;
    /// <summary>The attempt that ended last: its late news (a reply that arrives after all) must change nothing.</summary>
    public long? LastEnded;
    public List<string> Executed = [];

    public LifecycleWorld Clone() => new()
    {
        Life = Life, Pending = [.. Pending], Stored = Stored, Supervised = Supervised, Reported = Reported, Crashed = Crashed, Timers = [.. Timers],
        Running = new(Running), Clock = Clock, StopDecided = StopDecided, Stop = Stop, LastEnded = LastEnded, Executed = [],
    };

    DateTimeOffset Now => DateTimeOffset.UnixEpoch.AddSeconds(Clock);

    /// <summary>Every event that can happen in this world, by name.</summary>
    public IEnumerable<(string Name, Func<LifecycleWorld, List<string>> Apply)> Next()
    {
        // Requests wait while many actions are pending (the grain's callers wait on theirs): the worlds stay finite.
        var requests = Pending.Count <= 5;
        if (Crashed)
        {
            // The reminder (or any call) activates the grain again, somewhere else, from its stored state.
            yield return ("reactivate", w => w.Reactivate());
            yield break;
        }
        if (requests)
        {
            yield return ("start", w => w.Raise(new StartRequested(MaxRestarts)));
            yield return ("stop", w => w.Raise(new StopRequested()));
            yield return ("resume", w => w.Raise(new ResumeRequested()));
            if (Supervised) yield return ("tick", w => w.Raise(new ReminderTick()));
        }
        if (Pending.Count > 0) yield return ("execute", w => w.ExecuteNext());
        foreach (var t in Timers.Order()) yield return ($"timer{t}", w => w.Fire(t));
        foreach (var (a, (step, cancelled)) in Running.OrderBy(r => r.Key))
        {
            if (step < TotalSteps) yield return ($"step{a}", w => w.Progress(a));
            else yield return ($"complete{a}", w => w.End(a, new AttemptCompleted(a)));
            if (cancelled) yield return ($"stopped{a}", w => w.End(a, new AttemptStopped(a)));
            yield return ($"transient{a}", w => w.End(a, new AttemptFailed(a, new Fault(FaultKind.Transient, "a call timed out"), Now)));
            yield return ($"lost{a}", w => w.End(a, new AttemptFailed(a, new Fault(FaultKind.SiloLost, "the learner was lost", LostSilo), Now)));
            yield return ($"stalled{a}", w => w.End(a, new AttemptFailed(a, new Fault(FaultKind.Stalled, "no step finished"), Now)));
            yield return ($"fatal{a}", w => w.End(a, new AttemptFailed(a, new Fault(FaultKind.Fatal, "bad config"), Now)));
        }
        if (LastEnded is { } late) yield return ($"late{late}", w => w.Late(late));
        yield return ("crash", w => w.Crash());
        // Past the lost-silo grace: the same silo may count again.
        yield return ("later", w =>
        {
            w.Clock += 3600;
            return [];
        });
    }

    List<string> Raise(LifecycleEvent e)
    {
        var before = Life;
        var d = Lifecycle.Decide(Life, e);
        if (d.Refusal is not null) return d.State == before && d.Actions.IsEmpty ? [] : ["a refusal changed the state"];
        Life = d.State;
        Pending.AddRange(d.Actions);
        var broken = new List<string>();
        switch (e)
        {
            case StartRequested or ResumeRequested when before.Status != Life.Status:
                (StopDecided, Stop) = ((false, false), (false, false));
                if (e is ResumeRequested && Life.Restarts != 0) broken.Add("a resume did not reset the failure count");
                break;
            case StopRequested when before.Status == RunStatus.Running:
                StopDecided = (true, before.AllStepsApplied);
                break;
        }
        return broken;
    }

    /// <summary>
    /// Executes the next action and the synchronous ones after it (an event, a timer, a cancellation): the grain's pump
    /// yields only where an action awaits (a write, a reminder, a call), which is where other events get in.
    /// </summary>
    List<string> ExecuteNext()
    {
        var broken = Execute(Pending[0]);
        while (Pending.Count > 0 && Pending[0] is AppendStatusEvent or ScheduleAttempt or CancelAttempt or RunAttempt or CountFailedAttempt)
            broken.AddRange(Execute(Pending[0]));
        return broken;
    }

    List<string> Execute(LifecycleAction action)
    {
        Pending.RemoveAt(0);
        Executed.Add(action.GetType().Name);
        var broken = new List<string>();
        switch (action)
        {
            case Persist:
                Stored = Life with { Attempt = 0, Phase = AttemptPhase.None, Recovery = null, StopBeforeEnd = false };
                if (StopDecided.Asked) Stop = StopDecided;
                break;
            case Supervise:
                Supervised = true;
                break;
            case Unsupervise:
                Supervised = false;
                break;
            case ReportToRegistry:
                // "Not ended" may run ahead of storage (a resume tells the registry first); an end never does: the grain
                // reports what its last write stored, or waits for the report that follows its write.
                if (!Life.Status.IsFinal()) Reported = Life.Status;
                else if (Stored?.Status == Life.Status) Reported = Stored.Status;
                break;
            case ScheduleAttempt s:
                // The grain keeps one attempt timer: a new one replaces the old.
                Timers = [s.Attempt];
                break;
            case CancelAttempt c:
                Timers.Remove(c.Attempt);
                if (Running.TryGetValue(c.Attempt, out var r)) Running[c.Attempt] = r with { Cancelled = true };
                break;
            case RunAttempt run:
                if (Running.Count > 0) broken.Add($"attempt {run.Attempt} started while {string.Join(",", Running.Keys)} ran");
                Running[run.Attempt] = (Life.Step, false);
                break;
        }
        return broken;
    }

    List<string> Fire(long attempt)
    {
        Timers.Remove(attempt);
        return Raise(new AttemptDue(attempt));
    }

    List<string> Progress(long attempt)
    {
        var (step, cancelled) = Running[attempt];
        Running[attempt] = (step + 1, cancelled);
        return Raise(new Progressed(attempt, step + 1, step + 1 >= TotalSteps));
    }

    /// <summary>The attempt's loop ends (its last news is <paramref name="outcome"/>).</summary>
    List<string> End(long attempt, LifecycleEvent outcome)
    {
        Running.Remove(attempt);
        LastEnded = attempt;
        return Raise(outcome);
    }

    /// <summary>News of an attempt that has ended (counted, or superseded): it must be ignored.</summary>
    List<string> Late(long attempt)
    {
        var before = Life;
        var d = Lifecycle.Decide(Life, new AttemptFailed(attempt, new Fault(FaultKind.SiloLost, "late", LostSilo), Now));
        return d.State == before && d.Actions.IsEmpty ? [] : [$"late news of attempt {attempt} changed the run ({before.Status} → {d.State.Status})"];
    }

    /// <summary>The grain's silo dies: every action not executed, every timer and every attempt loop is gone.</summary>
    List<string> Crash()
    {
        LastEnded = null;
        // A stop not stored yet failed for its caller (the call met the dead silo): it was never taken.
        if (!Stop.Asked) StopDecided = (false, false);
        Pending.Clear();
        Timers.Clear();
        Running.Clear();
        Crashed = true;
        return [];
    }

    List<string> Reactivate()
    {
        Crashed = false;
        Life = Stored ?? new RunLifecycleState();
        return Raise(new Reactivated("S127.0.0.2:11111:1", "S127.0.0.3:11111:1", Now));
    }

    /// <summary>What must hold in every world, whatever happened before.</summary>
    public IEnumerable<string> Invariants()
    {
        if (Running.Count > 1) yield return $"{Running.Count} attempts run at once";
        if (Life.Status.IsFinal() && Life.Phase != AttemptPhase.None) yield return $"{Life.Status} with an attempt {Life.Phase}";
        if (Stop.Asked && Life.Status.IsFinal() && Life.Status != RunStatus.Stopped && !(Life.Status == RunStatus.Completed && Stop.AllApplied))
            yield return $"a stop was asked for and the run ended {Life.Status}";
        if (Stop.Asked && Life.Status == RunStatus.Running) yield return "a stop was asked for and the run runs on";
        if (Crashed || Pending.Count > 0) yield break;
        // Quiescent: supervision matches the status, and a running run has something that moves it on.
        if (Supervised != Life.Status.IsRunning()) yield return $"supervised={Supervised} while {Life.Status}";
        if (Life.Status == RunStatus.Running && Running.Count == 0 && Timers.Count == 0) yield return "running with no attempt and no timer";
        if (Life.Status == RunStatus.Stopping && Running.Count == 0) yield return "stopping with no attempt to finish";
        if (Stored is { } stored && stored.Status != Life.Status) yield return $"status {Life.Status} not stored ({stored.Status})";
        if (Life.Status.IsFinal() && Reported != Life.Status) yield return $"ended {Life.Status} and the registry was told {Reported}";
    }

    /// <summary>
    /// The world's identity for the tables: attempt numbers renamed by their order among those the world holds (the
    /// current one, and how far below it each other is in rank, not in value), times relative to now.
    /// </summary>
    public string Key()
    {
        var ids = new List<long>(8);
        void Note(long id)
        {
            if (!ids.Contains(id)) ids.Add(id);
        }
        Note(Life.Attempt);
        foreach (var t in Timers) Note(t);
        foreach (var r in Running.Keys) Note(r);
        if (LastEnded is { } ended) Note(ended);
        foreach (var a in Pending) if (Id(a) is { } id) Note(id);
        ids.Sort();
        var sorted = ids.ToArray();
        var current = Array.IndexOf(sorted, Life.Attempt);
        var b = new StringBuilder(96);
        StringBuilder Rel(long a) => b.Append(Array.IndexOf(sorted, a) - current);
        void Of(RunLifecycleState? s)
        {
            if (s is null)
            {
                b.Append('-');
                return;
            }
            b.Append((int)s.Status).Append(s.Step).Append(s.AllStepsApplied ? 'a' : '_').Append(s.Restarts).Append(s.RestartStep).Append(s.Error is null ? 'e' : '_');
            foreach (var (_, at) in s.CountedLostSilos) b.Append(Now - at < Grace ? 'f' : 'o');
        }
        Of(Life);
        b.Append('|').Append((int)Life.Phase).Append(Life.StopBeforeEnd ? 's' : '_').Append(Life.Recovery is null ? 'r' : '_').Append('|');
        foreach (var a in Pending)
        {
            b.Append(a switch
            {
                ScheduleAttempt => 'S', CancelAttempt => 'C', RunAttempt => 'R', AppendStatusEvent => 'A', Persist => 'P', Supervise => 'U',
                Unsupervise => 'N', ReportToRegistry => 'T', ReleaseLearner => 'L', _ => 'F',
            });
            if (Id(a) is { } id) Rel(id);
        }
        b.Append('|');
        Of(Stored);
        b.Append('|').Append(Supervised ? 's' : '_').Append(Crashed ? 'c' : '_').Append(Reported is { } reported ? (int)reported : -1).Append('|');
        foreach (var t in Timers) Rel(t).Append(',');
        b.Append('|');
        foreach (var (id, (step, cancelled)) in Running) Rel(id).Append(':').Append(step).Append(cancelled ? 'x' : '_');
        b.Append('|').Append(StopDecided.Asked ? 'd' : '_').Append(StopDecided.AllApplied ? 'a' : '_').Append(Stop.Asked ? 'k' : '_').Append(Stop.AllApplied ? 'a' : '_');
        if (LastEnded is { } l) Rel(l);
        return b.ToString();
    }

    static readonly TimeSpan Grace = new RunTimings().LostSiloGrace;

    static long? Id(LifecycleAction a) => a switch
    {
        ScheduleAttempt s => s.Attempt, CancelAttempt c => c.Attempt, RunAttempt r => r.Attempt, _ => null,
    };
}
