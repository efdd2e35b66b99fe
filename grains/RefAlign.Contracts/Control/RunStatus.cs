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
}
