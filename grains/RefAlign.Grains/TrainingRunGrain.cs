using System.Text.Json;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// One run: persists its config and progress, drives <see cref="TrainingRun"/> (the same loop as <c>refalign train</c>)
/// over grain-backed services from a grain timer, and keeps an event log for watchers. Queries and stop interleave with
/// the running loop. Supervision: every running run holds a reminder, so after the loss of any silo the grain is
/// reactivated wherever it lands and its loop continues by itself; a failed attempt is retried with backoff until
/// <c>distributed.max_restarts</c> attempts in a row made no progress. An attempt in which no step finishes within
/// <c>distributed.stall_timeout_seconds</c> is abandoned and counted as failed (the stall watch).
/// </summary>
public sealed class TrainingRunGrain(
    [PersistentState("run")] IPersistentState<RunState> state,
    ComputeExecutor executor,
    RoleDirectory roles,
    RunHostOptions host,
    ILocalSiloDetails silo,
    ILogger<TrainingRunGrain> logger) : Grain, ITrainingRunGrain, IRunObserver, IRemindable
{
    const string SupervisionReminder = "supervise";

    RunEventLog _log = null!;
    RunStateWriter? _writer;
    CancellationTokenSource? _stop;
    StallWatch? _watch;
    IGrainTimer? _loop;
    IReadOnlyList<RunWorker> _workers = [];
    string? _recovery;
    int _replayUntil;
    RunFiles? _files;

    string RunId => this.GetPrimaryKeyString();

    RunState S => state.State;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _log = new RunEventLog(RunId, host.EventLogCapacity, logger);
        _log.Load(S.Events);
        var here = silo.SiloAddress.ToString();
        var previous = S.HostSilo;
        S.HostSilo = here;
        if (S.ConfigJson.Length == 0) return;
        if (S.Status == RunStatus.Stopping)
        {
            // A stop is never lost: the stop was asked for, and the silo running the loop went away before it finished.
            S.Status = RunStatus.Stopped;
            Append(RunEventKind.Status, S.Step, message: $"stopped (the silo running it{(previous is null ? "" : $", {previous},")} was lost while it was stopping)");
            await EndAsync();
        }
        else if (S.Status == RunStatus.Running)
        {
            _recovery = previous is not null && previous != here ? $"after the loss of silo {previous}" : "after its grain was reactivated";
            logger.LogWarning("run {Run} was running when its grain went away; continuing it {Recovery}", RunId, _recovery);
            if (await CountFailure($"the silo hosting the run ({previous}) was lost", "run_silo_lost", previous != here ? previous : null))
                Launch(Backoff());
        }
        else if (S.Status.IsFinal()) await ReportAsync(); // in case its end was never reported (or predates the registry's summaries)
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _files?.Dispose();
        _files = null;
        return Task.CompletedTask;
    }

    public async Task<RunSummary> Start(string configJson)
    {
        if (S.ConfigJson.Length > 0) return Summary();
        var config = GrainCompute.Parse(configJson);
        state.State = new RunState
        {
            ConfigJson = configJson, Name = config.Name, Status = RunStatus.Running, CreatedAt = DateTimeOffset.UtcNow,
            Algorithm = JsonSerializer.Serialize(config.Algorithm).Trim('"'), HostSilo = silo.SiloAddress.ToString(),
        };
        Append(RunEventKind.Status, 0, message: "started");
        await PersistAsync();
        await Supervise();
        Launch(TimeSpan.Zero);
        return Summary();
    }

    public Task<RunSummary> GetSummary() => Task.FromResult(Summary());

    public Task<IReadOnlyList<RunEvent>> GetEvents(long afterSequence, int max) => Task.FromResult(_log.After(afterSequence, max));

    public Task Subscribe(IRunEventObserver observer)
    {
        _log.Subscribe(observer);
        return Task.CompletedTask;
    }

    public Task Unsubscribe(IRunEventObserver observer)
    {
        _log.Unsubscribe(observer);
        return Task.CompletedTask;
    }

    public async Task<RunSummary> Stop()
    {
        if (S.Status == RunStatus.Running)
        {
            S.Status = RunStatus.Stopping;
            Append(RunEventKind.Status, S.Step, message: "stopping after the current step");
            _stop?.Cancel();
            await PersistAsync();
            if (_loop is null)
            {
                // No loop to notice (it was waiting out a restart backoff): the run stops here.
                S.Status = RunStatus.Stopped;
                Append(RunEventKind.Status, S.Step, message: "stopped");
                await EndAsync();
            }
        }
        return Summary();
    }

    public async Task<RunSummary> Resume()
    {
        switch (S.Status)
        {
            case RunStatus.Completed: throw new InvalidOperationException($"run '{RunId}' has completed; start a new run to train further.");
            case RunStatus.Running or RunStatus.Stopping: return Summary();
            case RunStatus.Pending: throw new InvalidOperationException($"run '{RunId}' was never started.");
        }
        // The registry first: were this report lost after the run went on, listings would show the run as ended.
        // It counts the "resumed" event below, so an "ended" report still on its way is older and dropped.
        await GrainFactory.GetGrain<IRunRegistryGrain>(0).Report(RunId, S.NextSequence + 1, null);
        S.Status = RunStatus.Running;
        S.Error = null;
        S.ResetRestarts();
        Append(RunEventKind.Status, S.Step, message: "resumed");
        await PersistAsync();
        await Supervise();
        Launch(TimeSpan.Zero);
        return Summary();
    }

    public Task<IReadOnlyList<RunWorker>> Workers() => Task.FromResult(_workers);

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        // Reaching here reactivated the grain if it was gone (OnActivateAsync relaunched the loop); a live grain has its loop.
        if (reminderName != SupervisionReminder) return;
        if (S.Status.IsFinal() || S.Status == RunStatus.Pending) await Unsupervise();
        else if (S.Status == RunStatus.Running && _loop is null) Launch(TimeSpan.Zero);
    }

    /// <summary>Makes the end durable, drops supervision and tells the registry the final summary.</summary>
    async Task EndAsync()
    {
        await PersistAsync();
        await Unsupervise();
        await ReportAsync();
    }

    /// <summary>
    /// Tells the registry whether the run has ended. Best effort, whatever the fault (the registry's storage down, its
    /// silo lost): a lost report only costs a listing this grain's activation, and must not fail the activation itself.
    /// </summary>
    async Task ReportAsync()
    {
        try { await GrainFactory.GetGrain<IRunRegistryGrain>(0).Report(RunId, S.NextSequence, S.Status.IsFinal() ? Summary() : null); }
        catch (Exception e) { logger.LogWarning(e, "run {Run}: the registry did not take its report", RunId); }
    }

    Task Supervise() => this.RegisterOrUpdateReminder(SupervisionReminder, host.SupervisionPeriod, host.SupervisionPeriod);

    async Task Unsupervise()
    {
        if (await this.GetReminder(SupervisionReminder) is { } reminder) await this.UnregisterReminder(reminder);
    }

    void Launch(TimeSpan delay)
    {
        _stop = new CancellationTokenSource();
        _loop?.Dispose();
        // Interleaving timer: the loop awaits grain calls for minutes; queries and Stop must get through meanwhile.
        _loop = this.RegisterGrainTimer(LoopAsync, new GrainTimerCreationOptions(delay, Timeout.InfiniteTimeSpan) { Interleave = true, KeepAlive = true });
    }

    TimeSpan Backoff() => TimeSpan.FromSeconds(Math.Min(5 * Math.Pow(2, Math.Max(0, S.Restarts - 1)), 60));

    /// <summary>
    /// Counts a failed attempt (no finished step since the last one makes it consecutive); false, with the run failed,
    /// once <c>distributed.max_restarts</c> is exceeded.
    /// </summary>
    async Task<bool> CountFailure(string error, string reason, string? lostSilo = null)
    {
        TrainingTelemetry.FailedAttempts.Add(1, new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, RunId),
            new KeyValuePair<string, object?>(TrainingTelemetry.Tags.Reason, reason));
        var counted = S.CountFailure(lostSilo, DateTimeOffset.UtcNow, ClusterFaults.WorkerRetryBudget);
        S.Error = error;
        if (!counted)
        {
            Append(RunEventKind.Status, S.Step, message: $"attempt failed: {error}; the loss of silo {lostSilo} is counted already " +
                $"(the cluster has not declared it dead yet); retry in {Backoff().TotalSeconds:0}s");
            await PersistAsync();
            return true;
        }
        var max = GrainCompute.Parse(S.ConfigJson).Distributed.MaxRestarts;
        if (S.Restarts > max)
        {
            S.Status = RunStatus.Failed;
            Append(RunEventKind.Status, S.Step, message: $"failed after {S.Restarts} attempts without progress: {error}");
            await EndAsync();
            await ReleaseLearner();
            return false;
        }
        Append(RunEventKind.Status, S.Step, message: $"attempt failed: {error}; restart {S.Restarts} of {max} in {Backoff().TotalSeconds:0}s");
        await PersistAsync();
        return true;
    }

    async Task LoopAsync(CancellationToken timerCancellation)
    {
        // One trace per step: the timer callback inherits the trace of the call that launched the loop (Start or
        // Resume), which would put every step of the run into that one trace. Each step span starts a new trace.
        System.Diagnostics.Activity.Current = null;
        var stop = _stop!;
        var relaunch = (TimeSpan?)null;
        StallWatch? watch = null;
        try
        {
            var config = GrainCompute.Parse(S.ConfigJson);
            // Not tied to stop: a stop lets the loop checkpoint its finished steps through the services first.
            watch = _watch = new StallWatch(config.Distributed.StallTimeoutSeconds);
            Progress();
            var data = await executor.RunAsync(() => TrainingData.Load(config, TextTokenizer.Load(config.Policy.Model)));
            var total = data.TotalSteps(config);
            S.TotalSteps = total;
            var services = new GrainTrainingServices(RunId, config, S.ConfigJson, data, GrainFactory, roles, total,
                note => logger.LogWarning("run {Run}: {Note}", RunId, note), watch.Token);
            _workers = [.. services.ShardKeys.Select(k => new RunWorker(config.IsPreference ? SiloRoles.Reference : SiloRoles.Generator, k))];
            await WaitForLearnerSiloAsync(services, stop.Token);
            _files ??= RunFiles.Open(config.OutputDir, logger);
            var run = new TrainingRun(RunId, config, data, services, this);
            await run.RunAsync(stop.Token);
            S.Status = RunStatus.Completed;
            S.Error = null;
            Append(RunEventKind.Status, S.Step, message: "completed");
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            S.Status = RunStatus.Stopped;
            Append(RunEventKind.Status, S.Step, message: "stopped");
        }
        catch (OperationCanceledException) when (watch?.Fired == true && S.Status == RunStatus.Running)
        {
            // A call this attempt waits on may never answer: start over from the learner's state, as after any failure.
            logger.LogWarning("run {Run}: {Error}", RunId, watch.Error);
            _recovery = "after a stalled attempt";
            if (await CountFailure(watch.Error, "stalled")) relaunch = Backoff();
        }
        catch (Exception e) when (ClusterFaults.IsTransient(e) && S.Status == RunStatus.Running)
        {
            logger.LogWarning(e, "run {Run}: attempt failed", RunId);
            var lost = ClusterFaults.LostSilo(e, silo.SiloAddress.ToString());
            _recovery = lost is not null ? $"after the loss of silo {lost}" : "after a failed attempt";
            if (await CountFailure($"{e.GetType().Name}: {e.Message}", lost is not null ? "silo_lost" : "transient", lost)) relaunch = Backoff();
        }
        catch (Exception e)
        {
            logger.LogError(e, "run {Run} failed", RunId);
            S.Status = RunStatus.Failed;
            S.Error = $"{e.GetType().Name}: {e.Message}";
            Append(RunEventKind.Status, S.Step, message: S.Error);
        }
        finally
        {
            _watch = null;
            watch?.Dispose();
            _loop?.Dispose();
            _loop = null;
            if (relaunch is { } delay) Launch(delay);
            else if (S.Status.IsFinal())
            {
                await EndAsync();
                await ReleaseLearner();
            }
        }
    }

    /// <summary>Initializes the learner and the shard workers; with no learner silo in the cluster the run waits, visibly.</summary>
    async Task WaitForLearnerSiloAsync(GrainTrainingServices services, CancellationToken cancellation)
    {
        var announced = false;
        while (true)
        {
            try
            {
                await services.InitializeAsync(cancellation);
                return;
            }
            catch (NoSiloForRoleException e)
            {
                if (!announced)
                {
                    Append(RunEventKind.Status, S.Step, message: $"waiting: {e.Message}");
                    await PersistAsync();
                    announced = true;
                }
                Progress(); // waiting for a learner silo, visibly, is not a stall
                await Task.Delay(TimeSpan.FromSeconds(2), cancellation);
            }
        }
    }

    async Task ReleaseLearner()
    {
        // The learner keeps itself alive while a run uses it; let it go once the run has ended (wherever it is, if anywhere).
        try { await GrainFactory.GetGrain<ILearnerGrain>(RunId).Release(); }
        catch (Exception e) when (ClusterFaults.IsTransient(e)) { }
    }

    void Progress() => _watch?.Progress();

    async Task IRunObserver.OnResumeAsync(int step, long weightVersion, bool fromCheckpoint, IReadOnlyList<StepResult> recentlyApplied)
    {
        Progress();
        ApplyResume(step, weightVersion, fromCheckpoint);
        // A learner ahead of what this run reported: the step's reply was lost with a silo (the grain's, or the learner's
        // after a drain checkpoint). Report it now, from the learner's record when it is live, so every step appears
        // once (rollout and phase metrics were not kept; after a checkpoint restore there are none).
        var reported = S.Step;
        for (var s = reported; s < step; s++)
        {
            var result = recentlyApplied.FirstOrDefault(r => r.Step == s);
            var metrics = new Dictionary<string, double>(result?.Metrics ?? new Dictionary<string, double>()) { ["total_steps"] = S.TotalSteps };
            Append(RunEventKind.Status, s + 1, message: result is null
                ? $"step {s + 1} was applied and checkpointed but its report was lost with a silo; its metrics are gone"
                : $"step {s + 1} was applied but its report was lost with a silo; reported from the learner's record");
            Append(RunEventKind.Step, s + 1, metrics);
            S.LastMetrics = metrics;
        }
        if (step > reported)
        {
            S.Step = step;
            await PersistAsync();
        }
    }

    void ApplyResume(int step, long weightVersion, bool fromCheckpoint)
    {
        if (fromCheckpoint && step == 0 && S.LatestCheckpointStep > 0 || fromCheckpoint && step < (S.LatestCheckpointStep ?? 0))
            throw new CheckpointMissingException(RunId, S.Step, S.LatestCheckpointStep ?? 0, S.LatestCheckpoint);
        if (!fromCheckpoint && step == 0 && S.LatestCheckpointStep > 0)
            throw new CheckpointMissingException(RunId, S.Step, S.LatestCheckpointStep.Value, S.LatestCheckpoint);
        if (_recovery is { } how)
        {
            var what = step < S.Step
                ? $"recovered {how}; replaying from checkpoint step {step} (steps {step + 1}–{S.Step} run again)"
                : $"recovered {how}; continuing at step {step}";
            Append(RunEventKind.Status, step, message: what);
            _recovery = null;
        }
        _replayUntil = Math.Max(_replayUntil, S.Step);
        // Forward moves are reported step by step by OnResumeAsync; backward (a checkpoint restore) is set here.
        if (step < S.Step) S.Step = step;
        S.WeightVersion = weightVersion;
    }

    async Task IRunObserver.OnStepAsync(StepReport r)
    {
        Progress();
        S.Step = r.Step + 1;
        S.WeightVersion = r.WeightVersion;
        var metrics = new Dictionary<string, double>(r.Metrics) { ["tokens_per_second"] = r.TokensPerSecond, ["total_steps"] = r.TotalSteps };
        S.LastMetrics = metrics;
        // Events count steps from 1 (the number completed), like eval and checkpoint events. A step run again after a
        // learner's loss says so, so a reader can tell it from the first time.
        var replay = r.Step + 1 <= _replayUntil ? "replay" : null;
        foreach (var (phase, seconds) in r.PhaseSeconds)
            Append(RunEventKind.Phase, r.Step + 1, phase: phase, seconds: seconds, message: replay);
        Append(RunEventKind.Step, r.Step + 1, metrics, message: replay);
        // Durable before the loop goes on: a sequence number a watcher saw is never reused.
        await PersistAsync();
        _files?.OnStep(r);
    }

    void IRunObserver.OnEval(int step, IReadOnlyDictionary<string, double> metrics)
    {
        Progress();
        Append(RunEventKind.Eval, step, metrics);
        _files?.OnEval(step, metrics);
    }

    async Task IRunObserver.OnCheckpointAsync(int step, string folder)
    {
        Progress();
        S.LatestCheckpoint = folder;
        S.LatestCheckpointStep = step;
        _files?.OnCheckpoint(step, folder);
        Append(RunEventKind.Checkpoint, step, message: folder);
        await PersistAsync();
    }

    void Append(RunEventKind kind, int step, IReadOnlyDictionary<string, double>? metrics = null, string? phase = null,
        double? seconds = null, string? message = null) => _log.Append(S, kind, step, metrics, phase, seconds, message);

    /// <summary>Writes the state (waiting out a storage outage), then publishes the events it holds.</summary>
    Task PersistAsync() => (_writer ??= new RunStateWriter(state, logger, RunId)).WriteAsync(_log.Publish);

    RunSummary Summary()
    {
        if (S.ConfigJson.Length == 0) throw new RunNotFoundException(RunId);
        return new RunSummary(RunId, S.Name, S.Algorithm, S.Status, S.Step, S.TotalSteps, S.WeightVersion, S.LatestCheckpoint,
            S.CreatedAt, S.Error, S.LastMetrics, S.ConfigJson);
    }
}
