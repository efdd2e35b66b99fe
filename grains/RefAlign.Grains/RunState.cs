using System.Collections.Immutable;
using RefAlign.Contracts.Control;
using RefAlign.Grains.Lifecycle;

namespace RefAlign.Grains;

/// <summary>
/// A run's durable state, written before a step is acknowledged: what survives the loss of any silo. The loop resumes
/// from the learner (live) or the latest checkpoint; everything else is recomputed.
/// </summary>
[GenerateSerializer]
public sealed class RunState
{
    [Id(0)] public RunStatus Status { get; set; } = RunStatus.Pending;
    [Id(1)] public string ConfigJson { get; set; } = "";
    [Id(2)] public string Name { get; set; } = "";
    [Id(3)] public string Algorithm { get; set; } = "";
    [Id(4)] public int Step { get; set; }
    [Id(5)] public int TotalSteps { get; set; }
    [Id(6)] public long WeightVersion { get; set; }
    [Id(7)] public string? LatestCheckpoint { get; set; }
    [Id(8)] public DateTimeOffset CreatedAt { get; set; }
    [Id(9)] public string? Error { get; set; }
    [Id(10)] public Dictionary<string, double> LastMetrics { get; set; } = [];
    /// <summary>The newest events (a bounded tail), so a watcher attaching after a failover still sees recent history.</summary>
    [Id(11)] public List<RunEvent> Events { get; set; } = [];
    [Id(12)] public long NextSequence { get; set; } = 1;
    /// <summary>Step of <see cref="LatestCheckpoint"/>; a resume that finds no checkpoint although one was written fails loudly.</summary>
    [Id(13)] public int? LatestCheckpointStep { get; set; }
    /// <summary>Consecutive failed attempts without a finished step in between (crash-loop protection).</summary>
    [Id(14)] public int Restarts { get; set; }
    /// <summary><see cref="Step"/> at the last failure: a later step resets <see cref="Restarts"/>.</summary>
    [Id(15)] public int RestartStep { get; set; } = -1;
    /// <summary>The silo that hosted the run's grain last, to name it when the run recovers from its loss.</summary>
    [Id(16)] public string? HostSilo { get; set; }
    /// <summary>The lost silos <see cref="Restarts"/> counts already (since the last finished step), with when each was counted.</summary>
    [Id(17)] public Dictionary<string, DateTimeOffset> CountedLostSilos { get; set; } = [];

    /// <summary>The epoch of the run's newest learner: a learner holding an older one may no longer write for the run.</summary>
    [Id(18)] public long LearnerEpoch { get; set; }
    /// <summary>The furthest step reported so far: steps up to it that run again (after a checkpoint restore) are replays.</summary>
    [Id(19)] public int ReplayUntil { get; set; }

    /// <summary>The lifecycle's view of this state, as a newly activated grain finds it (no attempt of its own yet).</summary>
    public RunLifecycleState Lifecycle(int maxRestarts) => new()
    {
        Status = Status, Step = Step, AllStepsApplied = TotalSteps > 0 && Step >= TotalSteps, MaxRestarts = maxRestarts,
        Restarts = Restarts, RestartStep = RestartStep, CountedLostSilos = CountedLostSilos.ToImmutableDictionary(), Error = Error,
    };

    /// <summary>Copies what the lifecycle decided into the stored state (written by its next Persist).</summary>
    public void Mirror(RunLifecycleState life)
    {
        Status = life.Status;
        Step = life.Step;
        Restarts = life.Restarts;
        RestartStep = life.RestartStep;
        Error = life.Error;
        if (!CountedLostSilos.SequenceEqual(life.CountedLostSilos)) CountedLostSilos = new Dictionary<string, DateTimeOffset>(life.CountedLostSilos);
    }
}
