using System.Collections.Concurrent;
using Orleans.Runtime.Placement;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// Calls to a run's workers, placed by role, written once: each call carries a placement hint (shard i → the i-th
/// active silo of its role, re-read on every try, so shards follow silos that join and leave), is sent again after
/// transient failures until <see cref="RunTimings.WorkerRetryBudget"/> is spent, and ends at once when the attempt is
/// abandoned. A worker that answered from another silo than its shard's is moved there before the next step. When a
/// lost silo outlasts the budget, the failure names the silo the worker last answered from (<see cref="SiloLostException"/>).
/// </summary>
public sealed class WorkerCalls(RoleDirectory roles, RunTimings timings, Action<string>? note, CancellationToken attempt)
{
    readonly ConcurrentDictionary<string, string> _lastSilo = new(StringComparer.Ordinal);

    /// <summary>The silo the worker <paramref name="key"/> last answered from (null: not heard from yet).</summary>
    public string? LastSilo(string key) => _lastSilo.GetValueOrDefault(key);

    /// <summary>Notes where the worker <paramref name="key"/> answered from.</summary>
    public void Saw(string key, string silo)
    {
        if (silo.Length > 0) _lastSilo[key] = silo;
    }

    /// <summary>Shard i → the i-th active silo of <paramref name="role"/>, round robin; null when the role has none.</summary>
    public SiloAddress? SiloFor(string role, int shard)
    {
        var silos = roles.Active(role);
        return silos.Count == 0 ? null : silos[shard % silos.Count];
    }

    /// <summary>Sends <paramref name="call"/> with <paramref name="silo"/> as the placement hint for a new activation.</summary>
    public static T Hinted<T>(SiloAddress? silo, Func<T> call)
    {
        if (silo is null) return call();
        RequestContext.Set(IPlacementDirector.PlacementHintKey, silo);
        try { return call(); }
        finally { RequestContext.Remove(IPlacementDirector.PlacementHintKey); }
    }

    /// <summary>
    /// Calls worker <paramref name="key"/> of <paramref name="role"/> (placed as shard <paramref name="shard"/>) with the
    /// silo it is hinted to; again after transient failures. A stop lets the call finish (the loop stops after the
    /// step); only an abandoned attempt ends it.
    /// </summary>
    public async Task<T> SendAsync<T>(string role, int shard, string key, Func<SiloAddress?, Task<T>> call, CancellationToken cancellation)
    {
        var deadline = DateTime.UtcNow + timings.WorkerRetryBudget;
        for (var tries = 1; ; tries++)
        {
            var silo = SiloFor(role, shard);
            try
            {
                return await Hinted(silo, () => call(silo)).WaitAsync(attempt);
            }
            // A learner that is not ready is the run loop's to fix (it initializes and resumes the learner), not a worker's.
            catch (Exception e) when (ClusterFaults.Classify(e) is { IsRetried: true } fault && fault.Kind != FaultKind.Stalled
                && e is not LearnerNotReadyException && !cancellation.IsCancellationRequested && !attempt.IsCancellationRequested)
            {
                if (DateTime.UtcNow >= deadline)
                {
                    if (fault.Kind == FaultKind.SiloLost) throw new SiloLostException(role, key, LastSilo(key), e);
                    throw;
                }
                var delay = timings.RetryDelay(tries);
                note?.Invoke($"{role} {key} failed ({fault.Description}); retrying in {delay.TotalSeconds:0.#}s");
                await Task.Delay(delay, cancellation);
            }
        }
    }

    /// <summary>As <see cref="SendAsync{T}"/>, for a call without a reply.</summary>
    public Task SendAsync(string role, int shard, string key, Func<SiloAddress?, Task> call, CancellationToken cancellation) =>
        SendAsync(role, shard, key, async silo =>
        {
            await call(silo);
            return true;
        }, cancellation);

    /// <summary>A shard living elsewhere than its silo of now (one joined, or it was re-placed) moves before the next step.</summary>
    public async Task MoveIfMisplaced(string role, int shard, string key, string ranOn, Func<SiloAddress, Task> moveTo)
    {
        Saw(key, ranOn);
        if (SiloFor(role, shard) is not { } wanted || ranOn.Length == 0 || ranOn == wanted.ToParsableString()) return;
        note?.Invoke($"shard {key} moves from {ranOn} to {wanted.ToParsableString()} for the next step");
        await moveTo(wanted);
    }
}
