namespace RefAlign.Contracts.Control;

/// <summary>Lifecycle of a run.</summary>
public enum RunStatus
{
    Pending = 0,
    Running = 1,
    Stopping = 2,
    Stopped = 3,
    Completed = 4,
    Failed = 5,
}

public static class RunStatuses
{
    /// <summary>Stopped, completed or failed: nothing more happens unless the run is resumed.</summary>
    public static bool IsFinal(this RunStatus s) => s is RunStatus.Stopped or RunStatus.Completed or RunStatus.Failed;

    /// <summary>Running, or stopping after its current step: the run holds a learner and counts against the run limits.</summary>
    public static bool IsRunning(this RunStatus s) => s is RunStatus.Running or RunStatus.Stopping;
}
