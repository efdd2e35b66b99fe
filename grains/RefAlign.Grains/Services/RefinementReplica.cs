using RefAlign.Compute.Training;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// Sr-*'s prompted pass on a replica (a generator activation on a silo other than the learner's): brought to the
/// learner's version while the learner is idle, it computes the pass while the learner runs its plain pass, and offers
/// the values to the learner's step, which waits for them only as long as they save time. Any failure or lateness makes
/// the learner compute the pass itself (the loss is the same) and pauses the replica for a few steps.
/// </summary>
public sealed class RefinementReplica(RunContext run, IGrainFactory grains, RoleDirectory roles, RunTimings timings, Action<string>? note)
{
    /// <summary>Steps after a failed or late replica run the prompted pass on the learner, so a sick silo costs one step's wait.</summary>
    const int Pause = 10;

    long _pausedUntil;
    (long Version, Task<(IRolloutGeneratorGrain, WeightsManifest)?> Replica)? _ready;

    string Key => $"{run.RunId}/refine";

    ILearnerGrain Learner => grains.GetGrain<ILearnerGrain>(run.RunId);

    bool Wanted(long version) =>
        run.Config.IsSelfRefined && run.Config.Preference.RefinementPass != RefinementPass.Learner && version >= _pausedUntil;

    /// <summary>Starts bringing the replica to <paramref name="version"/> (the learner is idle now and can publish it).</summary>
    public void Prepare(long version)
    {
        if (_ready?.Version != version) _ready = (version, ReadyAsync(version));
    }

    /// <summary>The replica holding <paramref name="version"/> with its manifest, waited for at most the replica grace; null: the learner computes.</summary>
    public async Task<(IRolloutGeneratorGrain Replica, WeightsManifest Manifest)?> TakeAsync(long version, CancellationToken cancellation)
    {
        var ready = _ready is { } r && r.Version == version ? r.Replica : ReadyAsync(version);
        _ready = null;
        if (await Task.WhenAny(ready, Task.Delay(timings.ReplicaGrace, cancellation)) != ready)
        {
            Failed(version, $"prompted-pass replica {Key} not ready within {timings.ReplicaGrace.TotalSeconds:0}s");
            return null;
        }
        return await ready;
    }

    /// <summary>
    /// The replica for <paramref name="version"/> with its model loaded, and the manifest of that version, or null: the
    /// run computes the pass on the learner, no generator silo other than the learner's is active, or it could not be
    /// brought up.
    /// </summary>
    async Task<(IRolloutGeneratorGrain, WeightsManifest)?> ReadyAsync(long version)
    {
        if (!Wanted(version)) return null;
        var learners = roles.Active(SiloRoles.Learner);
        if (roles.Active(SiloRoles.Generator).FirstOrDefault(s => !learners.Contains(s)) is not { } silo) return null;
        var replica = grains.GetGrain<IRolloutGeneratorGrain>(Key);
        try
        {
            var manifest = Learner.GetWeights(Math.Max(0, version));
            var ranOn = await WorkerCalls.Hinted(silo, () => replica.SyncTo(run.RunId, -1, -1)).WaitAsync(timings.RefineTimeout);
            // Beside the learner it would compete for the compute threads the learner's step needs.
            if (learners.Any(l => l.ToParsableString() == ranOn))
            {
                note?.Invoke($"prompted-pass replica {Key} is on learner silo {ranOn}; moving it to {silo.ToParsableString()}");
                await replica.MoveTo(silo);
                return null;
            }
            return (replica, await manifest);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Failed(version, $"prompted-pass replica {Key} not ready ({ClusterFaults.Classify(e).Description})");
            return null;
        }
    }

    /// <summary>
    /// Runs the prompted pass on the replica and offers the values to the learner's step (null on failure: the learner
    /// computes them). Ends at once when <paramref name="handoff"/> is cancelled: the step no longer waits for it.
    /// </summary>
    public async Task OfferAsync(IRolloutGeneratorGrain replica, WeightsManifest manifest, int step, IReadOnlyList<PreferenceRow> rows, CancellationToken handoff)
    {
        PromptedPassReply? reply = null;
        try
        {
            reply = await replica.ScorePrompted(new PromptedPassRequest(run.RunId, step, manifest.Version, [.. rows.Select(r => r.Pair.ToMessage())], manifest))
                .WaitAsync(timings.RefineTimeout, handoff);
        }
        catch (OperationCanceledException) when (handoff.IsCancellationRequested)
        {
            return; // the step is done without it
        }
        catch (Exception e)
        {
            Failed(manifest.Version, $"prompted pass on {Key} failed ({ClusterFaults.Classify(e).Description})");
        }
        try
        {
            await Learner.OfferPrompted(step, reply).WaitAsync(handoff);
        }
        catch (OperationCanceledException) when (handoff.IsCancellationRequested)
        {
            return; // the step ended meanwhile: nothing waits for the offer any more
        }
        catch (Exception e) when (ClusterFaults.IsTransient(e))
        {
            // The learner's silo went: its own call reports and retries whatever that means.
            note?.Invoke($"offer of step {step}'s prompted pass not delivered ({ClusterFaults.Classify(e).Description})");
        }
    }

    /// <summary>The step's result says whether it used the replica's values; a step that did not means the replica was late.</summary>
    public void Used(long version, int step, StepResult result)
    {
        if (result.Metrics.GetValueOrDefault(Compute.Training.Learner.OffloadedMetric, 1) == 0)
            Failed(version, $"prompted pass on {Key} was late for step {step}");
    }

    void Failed(long version, string what)
    {
        if (_pausedUntil > version) return; // already paused (the replica's failure and the learner's timeout both report)
        _pausedUntil = version + Pause;
        note?.Invoke($"{what}; the learner computes the prompted pass for the next {Pause} steps");
    }
}
