using System.Collections.Immutable;

namespace RefAlign.Grains.Lifecycle;

/// <summary>
/// Executes the actions of each decision one at a time, in the order the decisions were made, whatever interleaves
/// between their awaits: a later decision's actions never overtake an earlier one's (an unsupervise never lands after
/// the supervise of a resume that followed it). Each batch's task ends when its own actions have run, with the first
/// action's failure, if any; the batches after it still run.
/// </summary>
public sealed class OrderedActions(Func<LifecycleAction, Task> execute)
{
    readonly Queue<(ImmutableArray<LifecycleAction> Actions, TaskCompletionSource Done)> _batches = new();
    Task _pump = Task.CompletedTask;

    /// <summary>Queues <paramref name="actions"/>; the task ends once they have run.</summary>
    public Task Enqueue(ImmutableArray<LifecycleAction> actions)
    {
        if (actions.IsEmpty) return Task.CompletedTask;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _batches.Enqueue((actions, done));
        // One pump at a time, started by whoever finds it idle; every failure lands in its batch's task.
        if (_pump.IsCompleted) _pump = PumpAsync();
        return done.Task;
    }

    async Task PumpAsync()
    {
        while (_batches.TryDequeue(out var batch))
        {
            try
            {
                foreach (var action in batch.Actions) await execute(action);
                batch.Done.SetResult();
            }
            catch (Exception e)
            {
                batch.Done.SetException(e);
            }
        }
    }
}
