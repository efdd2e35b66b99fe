using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A grain call lost in the cluster, made on purpose: an outgoing call filter on every silo of the in-process cluster
/// that holds one chosen <see cref="IRolloutGeneratorGrain.Generate"/> call forever, so its caller waits for a reply
/// that never comes (what Orleans does to a request forwarded to a silo that then dies: the caller's reply waits out
/// the response timeout, 30 minutes for Generate).
/// </summary>
public sealed class LostCalls
{
    readonly Lock _lock = new();
    readonly TaskCompletionSource _never = new(TaskCreationOptions.RunContinuationsAsynchronously);
    (string RunPrefix, int Step)? _target;

    /// <summary>The calls held so far.</summary>
    public int Held { get; private set; }

    /// <summary>Holds the first Generate call of step <paramref name="step"/> of the run whose id starts with <paramref name="runPrefix"/>.</summary>
    public void HoldOnce(string runPrefix, int step)
    {
        lock (_lock) _target = (runPrefix, step);
    }

    public Task InvokeAsync(IOutgoingGrainCallContext context)
    {
        if (context.Request.GetInterfaceType() == typeof(IRolloutGeneratorGrain) && context.MethodName == nameof(IRolloutGeneratorGrain.Generate)
            && context.Request.GetArgument(0) is GenerateRequest request)
        {
            lock (_lock)
            {
                if (_target is { } t && request.RunId.StartsWith(t.RunPrefix, StringComparison.Ordinal) && request.Step == t.Step)
                {
                    _target = null;
                    Held++;
                    return _never.Task;
                }
            }
        }
        return context.Invoke();
    }
}
