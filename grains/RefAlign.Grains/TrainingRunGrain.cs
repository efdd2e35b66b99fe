using System.Collections.Immutable;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Grains.Lifecycle;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// One run: persists its config and progress, and executes what <see cref="RunLifecycle"/> decides. Every request,
/// timer, reminder, activation and attempt outcome becomes a <see cref="LifecycleEvent"/>, decided at once and in one
/// turn; the actions run in decision order (<see cref="OrderedActions"/>). An attempt drives <see cref="TrainingRun"/>
/// (the same loop as <c>refalign train</c>) over grain-backed services from a grain timer, so queries and stop
/// interleave with it. Every running run holds a reminder: after the loss of any silo the grain is reactivated wherever
/// it lands and decides what to do from its stored state.
/// </summary>
public sealed class TrainingRunGrain(
    [PersistentState("run")] IPersistentState<RunState> state,
    ComputeExecutor executor,
    RoleDirectory roles,
    RunHostOptions host,
    ILocalSiloDetails silo,
    ILogger<TrainingRunGrain> logger) : Grain, ITrainingRunGrain, IRemindable
{
    const string SupervisionReminder = "supervise";

    readonly RunLifecycle _lifecycle = new(host.Timings);
    RunLifecycleState _life = new();
    OrderedActions? _actions;
    RunEventLog _log = null!;
    RunStateWriter? _writer;
    /// <summary>What the last write stored: its event sequence and, for an ended run, its summary (what the registry may be told).</summary>
    (long Sequence, RunSummary? Ended)? _stored;
    (long Id, IGrainTimer Timer, CancellationTokenSource Stop)? _attempt;
    IReadOnlyList<RunWorker> _workers = [];
    RunFiles? _files;

    string RunId => this.GetPrimaryKeyString();

    RunState S => state.State;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _log = new RunEventLog(RunId, host.EventLogCapacity, logger);
        _log.Load(S.Events);
        _actions = new OrderedActions(ExecuteAsync);
        var previous = S.HostSilo;
        S.HostSilo = silo.SiloAddress.ToString();
        if (S.ConfigJson.Length == 0) return;
        _stored = (S.NextSequence, S.Status.IsFinal() ? Summary() : null); // as loaded: durable
        _life = S.Lifecycle(GrainCompute.Parse(S.ConfigJson).Distributed.MaxRestarts);
        if (_life.Status == RunStatus.Running) logger.LogWarning("run {Run} was running when its grain went away; deciding how to go on", RunId);
        await Raise(new Reactivated(previous, S.HostSilo, DateTimeOffset.UtcNow));
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
            ConfigJson = configJson, Name = config.Name, CreatedAt = DateTimeOffset.UtcNow,
            Algorithm = JsonSerializer.Serialize(config.Algorithm).Trim('"'), HostSilo = silo.SiloAddress.ToString(),
        };
        await Raise(new StartRequested(config.Distributed.MaxRestarts));
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
        Summary(); // an unknown run is NOT_FOUND, not a no-op
        await Raise(new StopRequested());
        return Summary();
    }

    public async Task<RunSummary> Resume()
    {
        Summary();
        await Raise(new ResumeRequested());
        return Summary();
    }

    public Task<IReadOnlyList<RunWorker>> Workers() => Task.FromResult(_workers);

    public Task ReceiveReminder(string reminderName, TickStatus status) =>
        reminderName == SupervisionReminder ? Raise(new ReminderTick()) : Task.CompletedTask;

    /// <summary>Decides <paramref name="e"/> in this turn, then awaits its actions; the only place the run's status changes.</summary>
    async Task<Decision> Raise(LifecycleEvent e)
    {
        var decision = _lifecycle.Decide(_life, e);
        if (decision.Refusal is { } refusal) throw new InvalidOperationException($"run '{RunId}' {refusal}");
        _life = decision.State;
        S.Mirror(_life);
        await _actions!.Enqueue(decision.Actions);
        return decision;
    }

    /// <summary>Writes the state in order with the lifecycle's own writes (progress, checkpoints, the learner epoch).</summary>
    Task FlushAsync() => _actions!.Enqueue([new Persist()]);

    Task ExecuteAsync(LifecycleAction action) => action switch
    {
        AppendStatusEvent a => Append(RunEventKind.Status, a.Step, message: a.Message, status: a.Status),
        Persist => PersistAsync(),
        Supervise => this.RegisterOrUpdateReminder(SupervisionReminder, host.Timings.SupervisionPeriod, host.Timings.SupervisionPeriod),
        Unsupervise => UnsuperviseAsync(),
        ReportToRegistry => ReportAsync(),
        ScheduleAttempt s => Schedule(s),
        CancelAttempt c => Cancel(c.Attempt),
        RunAttempt => Task.CompletedTask, // the timer that raised AttemptDue runs it (see AttemptDueAsync)
        ReleaseLearner => ReleaseLearnerAsync(),
        CountFailedAttempt f => Count(f.Kind),
        _ => throw new ArgumentOutOfRangeException(nameof(action), action, "not a lifecycle action"),
    };

    Task Append(RunEventKind kind, int step, IReadOnlyDictionary<string, double>? metrics = null, string? phase = null,
        double? seconds = null, string? message = null, RunStatus? status = null)
    {
        _log.Append(S, kind, step, metrics, phase, seconds, message, status);
        return Task.CompletedTask;
    }

    /// <summary>Writes the state (waiting out a storage outage), publishes the events it holds, and notes what is now durable.</summary>
    async Task PersistAsync()
    {
        var stored = (S.NextSequence, Ended: S.Status.IsFinal() ? Summary() : null);
        await (_writer ??= new RunStateWriter(state, logger, RunId, host.Timings.StateWriteRetryLimit)).WriteAsync(_log.Publish);
        _stored = stored;
    }

    async Task UnsuperviseAsync()
    {
        if (await this.GetReminder(SupervisionReminder) is { } reminder) await this.UnregisterReminder(reminder);
    }

    /// <summary>
    /// Tells the registry whether the run has ended. "Not ended" may run ahead of storage (a resume tells the registry
    /// first, so a lost report never leaves a running run listed as ended); an end is reported only as the last write
    /// stored it, else the report that follows its write tells it. Best effort, whatever the fault (the registry's
    /// storage down, its silo lost): a lost report only costs a listing this grain's activation.
    /// </summary>
    async Task ReportAsync()
    {
        (long Sequence, RunSummary? Ended) report;
        if (!S.Status.IsFinal()) report = (S.NextSequence, null);
        else if (_stored is { Ended: { } ended } stored && ended.Status == S.Status) report = stored;
        else return;
        try { await GrainFactory.GetGrain<IRunRegistryGrain>(0).Report(RunId, report.Sequence, report.Ended); }
        catch (Exception e) { logger.LogWarning(e, "run {Run}: the registry did not take its report", RunId); }
    }

    Task Schedule(ScheduleAttempt s)
    {
        _attempt?.Timer.Dispose();
        var id = s.Attempt;
        // Interleaving timer: the attempt awaits grain calls for minutes; queries and Stop must get through meanwhile.
        var timer = this.RegisterGrainTimer(_ => AttemptDueAsync(id),
            new GrainTimerCreationOptions(s.Delay, Timeout.InfiniteTimeSpan) { Interleave = true, KeepAlive = true });
        _attempt = (id, timer, new CancellationTokenSource());
        return Task.CompletedTask;
    }

    Task Cancel(long id)
    {
        if (_attempt is { } a && a.Id == id) a.Stop.Cancel();
        return Task.CompletedTask;
    }

    Task Count(FaultKind kind)
    {
        TrainingTelemetry.FailedAttempts.Add(1, new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, RunId),
            new KeyValuePair<string, object?>(TrainingTelemetry.Tags.Reason, kind switch
            {
                FaultKind.SiloLost => "silo_lost", FaultKind.Stalled => "stalled", FaultKind.Fatal => "fatal", _ => "transient",
            }));
        return Task.CompletedTask;
    }

    async Task ReleaseLearnerAsync()
    {
        // The learner keeps itself alive while a run uses it; let it go once the run has ended (wherever it is, if anywhere).
        try { await GrainFactory.GetGrain<ILearnerGrain>(RunId).Release(); }
        catch (Exception e) when (ClusterFaults.IsTransient(e)) { logger.LogInformation("run {Run}: its learner was not reached to release it ({Fault})", RunId, e.GetType().Name); }
    }

    async Task AttemptDueAsync(long id)
    {
        var decision = await Raise(new AttemptDue(id));
        if (decision.Actions.Contains(new RunAttempt(id)) && _attempt is { } a && a.Id == id) await AttemptAsync(id, a.Stop.Token);
    }

    /// <summary>One pass of the training loop; whatever ends it becomes the attempt's outcome event.</summary>
    async Task AttemptAsync(long id, CancellationToken stop)
    {
        // One trace per step: the timer callback inherits the trace of the call that scheduled it; each step span starts anew.
        Activity.Current = null;
        var config = GrainCompute.Parse(S.ConfigJson);
        // Not tied to stop: a stop lets the loop checkpoint its finished steps through the services first.
        using var watch = new StallWatch(config.Distributed.StallTimeoutSeconds);
        LifecycleEvent outcome;
        try
        {
            watch.Progress();
            var data = await executor.RunAsync(() => TrainingData.Load(config, TextTokenizer.Load(config.Policy.Model)));
            var total = data.TotalSteps(config);
            S.TotalSteps = total;
            // The learner this attempt initializes holds a newer epoch than any before it: a learner of an older attempt
            // (a frozen silo that came back) can no longer write checkpoints, journal entries or weights for the run.
            S.LearnerEpoch++;
            await FlushAsync();
            var services = new GrainTrainingServices(new RunContext(RunId, config, S.ConfigJson, data, total, S.LearnerEpoch), GrainFactory, roles,
                host.Timings, note => logger.LogWarning("run {Run}: {Note}", RunId, note), watch.Token);
            _workers = [.. services.ShardKeys.Select(k => new RunWorker(config.IsPreference ? SiloRoles.Reference : SiloRoles.Generator, k))];
            await WaitForLearnerSiloAsync(id, services, watch, stop);
            _files ??= RunFiles.Open(config.OutputDir, logger);
            await new TrainingRun(RunId, config, data, services, new AttemptObserver(this, id, watch)).RunAsync(stop);
            outcome = new AttemptCompleted(id);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            outcome = new AttemptStopped(id);
        }
        catch (OperationCanceledException) when (watch.Fired)
        {
            // A call this attempt waits on may never answer: start over from the learner's state, as after any failure.
            logger.LogWarning("run {Run}: {Error}", RunId, watch.Error);
            outcome = new AttemptFailed(id, new Fault(FaultKind.Stalled, watch.Error), DateTimeOffset.UtcNow);
        }
        catch (Exception e)
        {
            var fault = ClusterFaults.Classify(e);
            if (fault.IsRetried) logger.LogWarning(e, "run {Run}: attempt failed ({Kind})", RunId, fault.Kind);
            else logger.LogError(e, "run {Run}: attempt failed", RunId);
            outcome = new AttemptFailed(id, fault, DateTimeOffset.UtcNow);
        }
        await Raise(outcome);
    }

    /// <summary>Initializes the learner and the shard workers; with no learner silo in the cluster the run waits, visibly.</summary>
    async Task WaitForLearnerSiloAsync(long id, GrainTrainingServices services, StallWatch watch, CancellationToken stop)
    {
        var announced = false;
        while (true)
        {
            try
            {
                await services.InitializeAsync(stop);
                return;
            }
            catch (NoSiloForRoleException e)
            {
                if (!announced) await Raise(new LearnerSiloMissing(id, e.Message));
                announced = true;
                watch.Progress(); // waiting for a learner silo, visibly, is not a stall
                await Task.Delay(host.Timings.LearnerSiloPoll, stop);
            }
        }
    }

    /// <summary>The progress of one attempt, reported by its loop; news of any other attempt than the current is dropped.</summary>
    sealed class AttemptObserver(TrainingRunGrain run, long id, StallWatch watch) : IRunObserver
    {
        public Task OnResumeAsync(int step, long weightVersion, bool fromCheckpoint, IReadOnlyList<StepResult> recentlyApplied)
        {
            watch.Progress();
            return run._life.Owns(id) ? run.OnResumeAsync(id, step, weightVersion, fromCheckpoint, recentlyApplied) : Task.CompletedTask;
        }

        public Task OnStepAsync(StepReport report)
        {
            watch.Progress();
            return run._life.Owns(id) ? run.OnStepAsync(id, report) : Task.CompletedTask;
        }

        public void OnEval(int step, IReadOnlyDictionary<string, double> metrics)
        {
            watch.Progress();
            if (!run._life.Owns(id)) return;
            run.Append(RunEventKind.Eval, step, metrics);
            run._files?.OnEval(step, metrics);
        }

        public Task OnCheckpointAsync(int step, string folder)
        {
            watch.Progress();
            return run._life.Owns(id) ? run.OnCheckpointAsync(step, folder) : Task.CompletedTask;
        }
    }

    async Task OnResumeAsync(long id, int step, long weightVersion, bool fromCheckpoint, IReadOnlyList<StepResult> recentlyApplied)
    {
        if (fromCheckpoint && step == 0 && S.LatestCheckpointStep > 0 || fromCheckpoint && step < (S.LatestCheckpointStep ?? 0)
            || !fromCheckpoint && step == 0 && S.LatestCheckpointStep > 0)
            throw new CheckpointMissingException(RunId, S.Step, S.LatestCheckpointStep ?? 0, S.LatestCheckpoint);
        if (_life.Recovery is { } how)
            await Append(RunEventKind.Status, step, message: step < S.Step
                ? $"recovered {how}; replaying from checkpoint step {step} (steps {step + 1}–{S.Step} run again)"
                : $"recovered {how}; continuing at step {step}");
        S.ReplayUntil = Math.Max(S.ReplayUntil, S.Step);
        S.WeightVersion = weightVersion;
        // A learner ahead of what this run reported: the step's reply was lost with a silo (the grain's, or the learner's
        // after a drain checkpoint). Report it now, from the learner's record when it is live, so every step appears
        // once (rollout and phase metrics were not kept; after a checkpoint restore there are none).
        for (var s = S.Step; s < step; s++)
        {
            var result = recentlyApplied.FirstOrDefault(r => r.Step == s);
            var metrics = new Dictionary<string, double>(result?.Metrics ?? new Dictionary<string, double>()) { ["total_steps"] = S.TotalSteps };
            await Append(RunEventKind.Status, s + 1, message: result is null
                ? $"step {s + 1} was applied and checkpointed but its report was lost with a silo; its metrics are gone"
                : $"step {s + 1} was applied but its report was lost with a silo; reported from the learner's record");
            await Append(RunEventKind.Step, s + 1, metrics);
            S.LastMetrics = metrics;
        }
        await Raise(new Progressed(id, step, step >= S.TotalSteps));
    }

    async Task OnStepAsync(long id, StepReport r)
    {
        S.WeightVersion = r.WeightVersion;
        var metrics = new Dictionary<string, double>(r.Metrics) { ["tokens_per_second"] = r.TokensPerSecond, ["total_steps"] = r.TotalSteps };
        S.LastMetrics = metrics;
        // Events count steps from 1 (the number completed), like eval and checkpoint events. A step run again after a
        // learner's loss says so, so a reader can tell it from the first time.
        var replay = r.Step + 1 <= S.ReplayUntil ? "replay" : null;
        foreach (var (phase, seconds) in r.PhaseSeconds)
            await Append(RunEventKind.Phase, r.Step + 1, phase: phase, seconds: seconds, message: replay);
        await Append(RunEventKind.Step, r.Step + 1, metrics, message: replay);
        // Durable before the loop goes on: a sequence number a watcher saw is never reused.
        await Raise(new Progressed(id, r.Step + 1, r.Step + 1 >= r.TotalSteps));
        _files?.OnStep(r);
    }

    async Task OnCheckpointAsync(int step, string folder)
    {
        S.LatestCheckpoint = folder;
        S.LatestCheckpointStep = step;
        _files?.OnCheckpoint(step, folder);
        await Append(RunEventKind.Checkpoint, step, message: folder);
        await FlushAsync();
    }

    RunSummary Summary()
    {
        if (S.ConfigJson.Length == 0) throw new RunNotFoundException(RunId);
        return new RunSummary(RunId, S.Name, S.Algorithm, S.Status, S.Step, S.TotalSteps, S.WeightVersion, S.LatestCheckpoint,
            S.CreatedAt, S.Error, S.LastMetrics, S.ConfigJson);
    }
}
