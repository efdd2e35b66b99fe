using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// The run's learner on a learner/GPU silo. All tensor work runs on the silo's compute executor; the grain only
/// sequences calls, keeps the published weight snapshot, the checkpoint store (in the shared checkpoint root, so a
/// learner re-placed after its silo was lost restores from it) and the journal of applied steps.
/// </summary>
[RolePlacement(SiloRoles.Learner)]
[KeepAlive] // the optimizer state lives here between steps; the run releases the learner when it ends
public sealed class LearnerGrain(ComputeExecutor executor, WeightExchange exchange, RunHostOptions host, SiloDrain drain,
    LocalLearners local, InPlaceReplicas replicas, ILocalSiloDetails silo, ILogger<LearnerGrain> logger) : Grain, ILearnerGrain
{
    /// <summary>Weight chunks stay well under Orleans' 100 MB message limit.</summary>
    public const int ChunkBytes = 16 << 20;

    Learner? _learner;
    RunConfig? _config;
    CheckpointStore? _store;
    AppliedStepJournal? _journal;
    int _stepsPerEpoch = 1;
    int _checkpointedStep = -1;
    /// <summary>The epoch the run handed this activation; a newer one in the checkpoint folder means the run moved on.</summary>
    EpochFence? _fence;
    bool _live;
    bool _drained;
    /// <summary>Published weight versions: the current one and the one before it (kept for a pipelined run's generators).</summary>
    readonly SortedDictionary<long, (WeightSnapshot Snapshot, string? Url, string Digest)> _snapshots = [];
    /// <summary>Per published version, the last generator silo in its relay chain (see <see cref="JoinRelay"/>).</summary>
    readonly Dictionary<long, string> _relayTails = [];
    IGrainTimer? _release;

    string RunId => this.GetPrimaryKeyString();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        local.Add(RunId);
        return Task.CompletedTask;
    }

    // A new activation that a call reached before the run initialized it (e.g. re-placed after its silo was lost): the
    // run's loop restarts, initializes it and resumes from the checkpoint.
    Learner Require() => _learner ?? throw new LearnerNotReadyException(RunId);

    public async Task<LearnerLease> Initialize(string configJson, int totalSteps, int stepsPerEpoch, long epoch)
    {
        _release?.Dispose();
        _release = null;
        _stepsPerEpoch = Math.Max(1, stepsPerEpoch);
        var config = _config ?? GrainCompute.Parse(configJson);
        var folder = host.CheckpointFolder(RunId, config);
        // Each attempt of the run brings a higher epoch: claim the folder with it (refused if a newer learner owns it).
        if (_fence is { } held && held.Epoch > epoch) throw new FencedLearnerException(RunId, epoch, held.Epoch);
        _fence = new EpochFence(folder, epoch);
        Fenced(_fence.Claim);
        if (_learner is null)
        {
            _learner = await executor.RunAsync(() =>
            {
                // Same seeding as the local trainer, so LoRA dropout draws match.
                TorchSharp.torch.manual_seed(config.Seed);
                var tok = TextTokenizer.Load(config.Policy.Model);
                var policy = CausalLm.FromPretrained(config.Policy.Model, config.Policy.Dtype.ToScalarType(), executor.TensorDevice);
                var (_, pad) = PolicySetup.SpecialIds(tok, policy);
                return new Learner(config, policy, pad, totalSteps);
            });
            _config = config;
            if (config.Distributed.Mode != DistributedMode.Pipelined) replicas.Lend(RunId, _learner);
            logger.LogInformation("learner {Run} ready ({Algorithm}, {Steps} steps, checkpoints in {Folder}, epoch {Epoch})",
                RunId, config.Algorithm, totalSteps, folder, epoch);
        }
        _store = new CheckpointStore(folder, config.KeepCheckpoints) { Fence = _fence };
        _journal = new AppliedStepJournal(Path.Combine(folder, AppliedStepJournal.FileName), _fence);
        return new LearnerLease(Silo, epoch);
    }

    string Silo => silo.SiloAddress.ToParsableString();

    /// <summary>Checkpoint manifests name the epoch of the learner that wrote them.</summary>
    const string EpochKey = "learner_epoch";

    string Epoch => (_fence?.Epoch ?? 0).ToString(CultureInfo.InvariantCulture);

    /// <summary>Runs a durable write; a newer learner owning the run turns it into <see cref="FencedLearnerException"/>, and this activation goes.</summary>
    async Task<T> Fenced<T>(Func<Task<T>> write)
    {
        try { return await write(); }
        catch (StaleEpochException e) { throw FencedOff(e); }
    }

    /// <summary>A small durable write (the epoch file, a journal line) done here, fenced as above.</summary>
    void Fenced(Action write)
    {
        try { write(); }
        catch (StaleEpochException e) { throw FencedOff(e); }
    }

    FencedLearnerException FencedOff(StaleEpochException e)
    {
        logger.LogWarning("learner {Run} (epoch {Epoch}) was fenced off: epoch {Owner} owns the run; deactivating", RunId, e.Epoch, e.Owner);
        DeactivateOnIdle();
        return new FencedLearnerException(RunId, e.Epoch, e.Owner);
    }

    public async Task<ResumePoint> Resume(bool fromCheckpoint)
    {
        var learner = Require();
        if (_live && !fromCheckpoint)
        {
            // This activation's weights are the run's: continue where they are, no rewind.
            return new ResumePoint(new CheckpointMessage(learner.Step, (long)learner.Step * _config!.BatchSize, learner.Step / _stepsPerEpoch, RunId,
                new Dictionary<string, string> { ["weight_version"] = learner.WeightVersion.ToString(CultureInfo.InvariantCulture), ["live"] = "true" }),
                RecentlyApplied: [.. learner.RecentlyApplied.Select(r => r.ToMessage())]);
        }
        var restored = await Exclusively(() => learner.RestoreLatestFrom(_store!));
        Fenced(() => _journal!.Restored(restored?.Manifest.Step ?? 0, learner.WeightVersion));
        _live = true;
        // Versions published before the restore may belong to steps the restore undid.
        _snapshots.Clear();
        _relayTails.Clear();
        exchange.Remove(RunId);
        if (restored is not { } r) return new ResumePoint(null);
        _checkpointedStep = r.Manifest.Step;
        logger.LogInformation("learner {Run} restored checkpoint step {Step}", RunId, r.Manifest.Step);
        var prefetch = Path.Combine(r.Folder, PrefetchFile);
        return new ResumePoint(r.Manifest.ToMessage(),
            File.Exists(prefetch) ? JsonSerializer.Deserialize<RolloutMessage[]>(await File.ReadAllBytesAsync(prefetch)) : null);
    }

    /// <summary>A pipelined run's rollouts for the step after the checkpoint, sampled with the weights before it.</summary>
    const string PrefetchFile = "prefetch.json";

    public Task<StepResultMessage> LearnRefAlign(int step, IReadOnlyList<RolloutRowMessage> rows) =>
        Learn(step, learner => executor.RunAsync(() => learner.RefAlignStep(step, [.. rows.Select(r => r.ToCompute())])));

    public async Task<StepResultMessage> LearnPreference(int step, IReadOnlyList<PreferenceRowMessage> rows, bool promptedOffered)
    {
        var offer = promptedOffered ? OfferSlot(step) : null;
        PreferenceRow[] batch = [.. rows.Select(r => r.ToCompute())];
        try
        {
            return await Learn(step, async learner =>
            {
                if (offer is null) return await executor.RunAsync(() => learner.PreferenceStep(step, batch));
                // The first plain pass, then the wait for the replica's offer here, in grain code: no compute thread waits
                // on a grain message. Values of any other version than the step's own are not used: the loss must not
                // depend on where Δ was computed.
                var started = Stopwatch.StartNew();
                var pending = await executor.RunAsync(() => learner.BeginPreferenceStep(step, batch));
                IReadOnlyList<PromptedPolicyLogProbs>? given = null;
                if (pending.Done is null)
                {
                    pending.Offered = true;
                    var patience = host.Timings.OfferPatience(started.Elapsed);
                    if (await Task.WhenAny(offer.Task, Task.Delay(patience)) == offer.Task && offer.Task.Result is { } r
                        && r.WeightVersion == learner.WeightVersion && r.Chosen.Length == r.Rejected.Length)
                        given = [.. r.Chosen.Select((c, i) => new PromptedPolicyLogProbs(c, r.Rejected[i]))];
                }
                return await executor.RunAsync(() => learner.FinishPreferenceStep(pending, given));
            });
        }
        finally { _offers.Remove(step); }
    }

    /// <summary>A replica's prompted log-probs per step; whichever of the step and the offer arrives first makes the slot.</summary>
    readonly Dictionary<int, TaskCompletionSource<PromptedPassReply?>> _offers = [];

    TaskCompletionSource<PromptedPassReply?> OfferSlot(int step)
    {
        foreach (var old in _offers.Keys.Where(s => s < step - 1).ToList()) _offers.Remove(old);
        if (!_offers.TryGetValue(step, out var slot)) _offers[step] = slot = new(TaskCreationOptions.RunContinuationsAsynchronously);
        return slot;
    }

    public Task OfferPrompted(int step, PromptedPassReply? values)
    {
        OfferSlot(step).TrySetResult(values);
        return Task.CompletedTask;
    }

    public Task<StepResultMessage> LearnSft(int step, IReadOnlyList<SftSequenceMessage> rows) =>
        Learn(step, learner => executor.RunAsync(() => learner.SftStep(step, [.. rows.Select(r => r.ToCompute())])));

    public Task<IReadOnlyDictionary<string, double>> EvaluateSft(IReadOnlyList<SftSequenceMessage> rows) =>
        Exclusively(() => Require().EvaluateSft([.. rows.Select(r => r.ToCompute())]));

    /// <summary>
    /// Tensor work that changes the weights or the policy's train/eval mode, with no in-place replica sampling meanwhile
    /// (lent generators fall back to their own replica until it is done).
    /// </summary>
    async Task<T> Exclusively<T>(Func<T> work)
    {
        using var _ = await replicas.UpdateAsync(RunId);
        return await executor.RunAsync(work);
    }

    async Task<StepResultMessage> Learn(int step, Func<Learner, Task<StepResult>> work)
    {
        if (_drained || drain.IsDraining) throw new SiloDrainingException($"learner {RunId}");
        var learner = Require();
        var before = learner.WeightVersion;
        // Pipelined: generators sample the next step with these weights while this step changes them, so publish them first.
        if (_config!.Distributed.Mode == DistributedMode.Pipelined) await PublishAsync(before);
        // Checked before the weights change: a fenced learner applies nothing.
        Fenced(_fence!.Check);
        using var activity = TrainingTelemetry.StartPhase("learner.step", RunId, step, before);
        StepResult result;
        using (await replicas.UpdateAsync(RunId)) result = await work(learner);
        _live = true;
        // Journaled before the step is acknowledged; a retried step (same result, no new version) is not journaled again.
        if (result.WeightVersion != before) Fenced(() => _journal!.Applied(step, result.WeightVersion));
        return result.ToMessage();
    }

    public Task<IReadOnlyDictionary<string, double>> EvaluatePreference(IReadOnlyList<PreferenceRowMessage> rows) =>
        Exclusively(() => Require().EvaluatePreference([.. rows.Select(r => r.ToCompute())]));

    public async Task<string> Checkpoint(CheckpointMessage manifest, IReadOnlyList<RolloutMessage>? prefetch)
    {
        var learner = Require();
        var config = _config!;
        var m = manifest.ToCompute();
        var stamped = m with { Extra = new Dictionary<string, string>(m.Extra) { [EpochKey] = Epoch } };
        var folder = await Fenced(() => executor.RunAsync(() => learner.SaveCheckpoint(_store!, stamped, config.Policy.Model,
            prefetch is null ? null : f => File.WriteAllBytes(Path.Combine(f, PrefetchFile), JsonSerializer.SerializeToUtf8Bytes(prefetch)))));
        _checkpointedStep = manifest.Step;
        return folder;
    }

    public async Task Drain()
    {
        if (_learner is not { } learner || _drained) return;
        _drained = true;
        // A pipelined run's exact resume needs the prefetched rollouts its run saves with each checkpoint, which the
        // learner does not have: it resumes from its last regular checkpoint instead.
        if (!_live || learner.Step <= _checkpointedStep || _config!.Distributed.Mode == DistributedMode.Pipelined) return;
        var step = learner.Step;
        var manifest = new CheckpointManifest(step, (long)step * _config!.BatchSize, step / _stepsPerEpoch, RunId, new Dictionary<string, string>
        {
            ["weight_version"] = learner.WeightVersion.ToString(CultureInfo.InvariantCulture),
            ["algorithm"] = _config.Algorithm.ToString(),
            ["reason"] = "drain",
            [EpochKey] = Epoch,
        });
        var folder = await Fenced(() => executor.RunAsync(() => learner.SaveCheckpoint(_store!, manifest, _config.Policy.Model)));
        _checkpointedStep = step;
        logger.LogWarning("learner {Run} checkpointed step {Step} for the silo's shutdown: {Folder}", RunId, step, folder);
    }

    public Task<long> WeightVersion() => Task.FromResult(Require().WeightVersion);

    /// <summary>Lets the activation go a little after its run ended (a prompt resume, or a look at its state, still finds it).</summary>
    public Task Release()
    {
        _release?.Dispose();
        _release = this.RegisterGrainTimer(() =>
        {
            DeactivateOnIdle();
            return Task.CompletedTask;
        }, new GrainTimerCreationOptions(host.Timings.LearnerReleaseDelay, Timeout.InfiniteTimeSpan));
        return Task.CompletedTask;
    }

    public Task Unload()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public async Task<long> LoadWeights(string checkpointFolder)
    {
        var learner = Require();
        // Version 1: above the model folder's 0, which the workers hold already and would not fetch again.
        var version = await Exclusively(() =>
        {
            learner.LoadCheckpoint(checkpointFolder, weightVersion: 1);
            return learner.WeightVersion;
        });
        _snapshots.Clear();
        _relayTails.Clear();
        exchange.Remove(RunId);
        return version;
    }

    public async Task<WeightsManifest> GetWeights(long version)
    {
        var learner = Require();
        var current = learner.WeightVersion;
        var wanted = version < 0 ? current : version;
        if (!_snapshots.ContainsKey(wanted))
        {
            if (wanted != current) throw new WeightVersionGoneException(RunId, wanted, current);
            await PublishAsync(current);
        }
        var (snapshot, url, digest) = _snapshots[wanted];
        return new WeightsManifest(wanted, snapshot.ChunkCount(ChunkBytes), ChunkBytes, snapshot.TotalBytes, [.. snapshot.Entries.Select(e => e.ToMessage())], url, digest,
            _fence?.Epoch ?? 0);
    }

    /// <summary>Captures and publishes the current weights as <paramref name="version"/>, keeping only it and the one before.</summary>
    async Task PublishAsync(long version)
    {
        if (_snapshots.ContainsKey(version)) return;
        var learner = Require();
        // A fenced learner publishes nothing: generators would sample with weights the run no longer owns.
        Fenced(_fence!.Check);
        // The versions this one makes stale go first: once no stream reads them, their buffers take this capture.
        foreach (var old in _snapshots.Keys.Where(v => v < version - 1).ToList())
        {
            _snapshots.Remove(old);
            _relayTails.Remove(old);
            exchange.Retract(RunId, old);
        }
        var (snapshot, digest) = await executor.RunAsync(() =>
        {
            var s = WeightSnapshot.Capture(learner.TrainableParameters(), exchange.Buffers.Rent);
            return (s, s.Digest());
        });
        _snapshots[version] = (snapshot, exchange.Publish(RunId, version, snapshot, recycle: true), digest);
    }

    public Task<string?> JoinRelay(long version, string relayAddress)
    {
        if (!_snapshots.TryGetValue(version, out var s) || s.Url is null) return Task.FromResult<string?>(null);
        if (!relayAddress.StartsWith("tcp://", StringComparison.Ordinal) || relayAddress.Length > 512)
            throw new ArgumentException($"not a weight address: {relayAddress}", nameof(relayAddress));
        // Each joiner reads from the one before it: a chain, pipelined in slices, in which the learner sends once.
        var upstream = _relayTails.TryGetValue(version, out var tail) ? tail : s.Url;
        _relayTails[version] = relayAddress;
        return Task.FromResult<string?>(upstream);
    }

    // A learner re-placed after its silo was lost holds no version until its run initializes it: that is the run's to
    // fix (not ready), not a version the learner moved past, which would fail the step that asked.
    public Task<byte[]> GetWeightsChunk(long version, int index) =>
        _snapshots.TryGetValue(version, out var s)
            ? Task.FromResult(s.Snapshot.Chunk(index, ChunkBytes))
            : throw new WeightVersionGoneException(RunId, version, Require().WeightVersion);

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var learner = _learner;
        _learner = null;
        _snapshots.Clear();
        _relayTails.Clear();
        exchange.Remove(RunId);
        local.Remove(RunId);
        // A generator still sampling the lent policy finishes before it is disposed.
        await replicas.WithdrawAsync(RunId);
        if (learner is null) return;
        await executor.RunAsync(() =>
        {
            learner.Dispose();
            learner.Policy.Dispose();
        }, cancellationToken);
    }
}

/// <summary>The learner activation has not been initialized by its run (yet); the run retries after initializing it.</summary>
[GenerateSerializer]
public sealed class LearnerNotReadyException(string runId) : Exception($"learner {runId} is not initialized (it was re-placed); the run initializes it and resumes.");

/// <summary>
/// A learner of an older epoch was asked to act for its run: the run has a newer learner (this one's silo froze or was
/// partitioned and came back). Transient for the caller, which reaches the current learner once the directory has moved on.
/// </summary>
[GenerateSerializer]
public sealed class FencedLearnerException(string runId, long epoch, long owner)
    : Exception($"learner {runId} of epoch {epoch} was fenced off: epoch {owner} owns the run.")
{
    [Id(0)] public long Epoch { get; } = epoch;

    [Id(1)] public long Owner { get; } = owner;
}
