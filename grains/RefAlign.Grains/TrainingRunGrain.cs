using Orleans.Runtime;
using Orleans.Utilities;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RefAlign.Runtime;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;

namespace RefAlign.Grains;

/// <summary>
/// One run: persists its config and progress, drives <see cref="TrainingRun"/> (the same loop as <c>refalign train</c>)
/// over grain-backed services from a grain timer, and keeps an event log for watchers. Queries and stop interleave with
/// the running loop; a reactivated grain whose run was running resumes it from the latest checkpoint.
/// </summary>
public sealed class TrainingRunGrain(
    [PersistentState("run")] IPersistentState<RunState> state,
    ComputeExecutor executor,
    RunEventLogOptions eventLog,
    ILogger<TrainingRunGrain> logger) : Grain, ITrainingRunGrain, IRunObserver
{
    /// <summary>Events persisted with the state (what a reactivated grain can replay to watchers).</summary>
    const int EventTail = 200;

    readonly List<RunEvent> _events = [];
    readonly ObserverManager<IRunEventObserver> _watchers = new(TimeSpan.FromMinutes(1), logger);
    readonly SemaphoreSlim _writeLock = new(1, 1);
    CancellationTokenSource? _stop;
    IGrainTimer? _loop;
    int _shards;

    string RunId => this.GetPrimaryKeyString();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _events.AddRange(state.State.Events);
        if (state.State.Status is RunStatus.Running or RunStatus.Stopping && state.State.ConfigJson.Length > 0)
        {
            logger.LogWarning("run {Run} was {Status} when its grain went away; resuming from the latest checkpoint", RunId, state.State.Status);
            Launch();
        }
        return Task.CompletedTask;
    }

    public async Task<RunSummary> Start(string configJson)
    {
        if (state.State.ConfigJson.Length > 0) return Summary();
        var config = GrainCompute.Parse(configJson);
        state.State = new RunState
        {
            ConfigJson = configJson, Name = config.Name, Status = RunStatus.Running, CreatedAt = DateTimeOffset.UtcNow,
            Algorithm = JsonSerializer.Serialize(config.Algorithm).Trim('"'),
        };
        Append(RunEventKind.Status, 0, message: "started");
        await PersistAsync();
        Launch();
        return Summary();
    }

    public Task<RunSummary> GetSummary() => Task.FromResult(Summary());

    public Task<IReadOnlyList<RunEvent>> GetEvents(long afterSequence, int max)
    {
        if (_events.Count > 0 && afterSequence < _events[0].Sequence - 1) throw new RunEventsTrimmedException(RunId, _events[0].Sequence);
        // Sequences are consecutive, so the first wanted event's index follows from the oldest kept one.
        var start = _events.Count == 0 ? 0 : (int)Math.Clamp(afterSequence + 1 - _events[0].Sequence, 0, _events.Count);
        return Task.FromResult<IReadOnlyList<RunEvent>>(_events.GetRange(start, Math.Min(max, _events.Count - start)));
    }

    public Task Subscribe(IRunEventObserver observer)
    {
        _watchers.Subscribe(observer, observer);
        return Task.CompletedTask;
    }

    public Task Unsubscribe(IRunEventObserver observer)
    {
        _watchers.Unsubscribe(observer);
        return Task.CompletedTask;
    }

    public async Task<RunSummary> Stop()
    {
        if (state.State.Status == RunStatus.Running)
        {
            state.State.Status = RunStatus.Stopping;
            Append(RunEventKind.Status, state.State.Step, message: "stopping after the current step");
            _stop?.Cancel();
            await PersistAsync();
        }
        return Summary();
    }

    public async Task<RunSummary> Resume()
    {
        switch (state.State.Status)
        {
            case RunStatus.Completed: throw new InvalidOperationException($"run '{RunId}' has completed; start a new run to train further.");
            case RunStatus.Running or RunStatus.Stopping: return Summary();
            case RunStatus.Pending: throw new InvalidOperationException($"run '{RunId}' was never started.");
        }
        state.State.Status = RunStatus.Running;
        state.State.Error = null;
        Append(RunEventKind.Status, state.State.Step, message: "resumed");
        await PersistAsync();
        Launch();
        return Summary();
    }

    public Task<IReadOnlyList<string>> GeneratorKeys() =>
        Task.FromResult<IReadOnlyList<string>>(_shards == 0 ? [] : [.. Enumerable.Range(0, _shards).Select(s => $"{RunId}/{s}")]);

    void Launch()
    {
        _stop = new CancellationTokenSource();
        _loop?.Dispose();
        // Interleaving timer: the loop awaits grain calls for minutes; queries and Stop must get through meanwhile.
        _loop = this.RegisterGrainTimer(LoopAsync, new GrainTimerCreationOptions(TimeSpan.Zero, Timeout.InfiniteTimeSpan) { Interleave = true, KeepAlive = true });
    }

    async Task LoopAsync(CancellationToken timerCancellation)
    {
        // One trace per step: the timer callback inherits the trace of the call that launched the loop (Start or
        // Resume), which would put every step of the run into that one trace. Each step span starts a new trace.
        System.Diagnostics.Activity.Current = null;
        var stop = _stop!;
        try
        {
            var config = GrainCompute.Parse(state.State.ConfigJson);
            var data = await executor.RunAsync(() => TrainingData.Load(config, TextTokenizer.Load(config.Policy.Model)));
            var total = data.TotalSteps(config);
            state.State.TotalSteps = total;
            var services = new GrainTrainingServices(RunId, config, state.State.ConfigJson, data, GrainFactory, total);
            if (!config.IsPreference) _shards = config.Distributed.Shards;
            await services.InitializeAsync();
            var run = new TrainingRun(RunId, config, data, services, this);
            await run.RunAsync(stop.Token);
            state.State.Status = RunStatus.Completed;
            Append(RunEventKind.Status, state.State.Step, message: "completed");
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            state.State.Status = RunStatus.Stopped;
            Append(RunEventKind.Status, state.State.Step, message: "stopped");
        }
        catch (Exception e)
        {
            logger.LogError(e, "run {Run} failed", RunId);
            state.State.Status = RunStatus.Failed;
            state.State.Error = $"{e.GetType().Name}: {e.Message}";
            Append(RunEventKind.Status, state.State.Step, message: state.State.Error);
        }
        finally
        {
            _loop?.Dispose();
            _loop = null;
            await PersistAsync();
            // The learner keeps itself alive while a run uses it; let it go once the run has ended.
            await GrainFactory.GetGrain<ILearnerGrain>(RunId).Release();
        }
    }

    void IRunObserver.OnStep(StepReport r)
    {
        state.State.Step = r.Step + 1;
        state.State.WeightVersion = r.WeightVersion;
        var metrics = new Dictionary<string, double>(r.Metrics) { ["tokens_per_second"] = r.TokensPerSecond, ["total_steps"] = r.TotalSteps };
        state.State.LastMetrics = metrics;
        // Events count steps from 1 (the number completed), like eval and checkpoint events.
        foreach (var (phase, seconds) in r.PhaseSeconds)
            Append(RunEventKind.Phase, r.Step + 1, phase: phase, seconds: seconds);
        Append(RunEventKind.Step, r.Step + 1, metrics);
        _ = PersistAsync();
    }

    void IRunObserver.OnEval(int step, IReadOnlyDictionary<string, double> metrics) => Append(RunEventKind.Eval, step, metrics);

    void IRunObserver.OnCheckpoint(int step, string folder)
    {
        state.State.LatestCheckpoint = folder;
        Append(RunEventKind.Checkpoint, step, message: folder);
    }

    void Append(RunEventKind kind, int step, IReadOnlyDictionary<string, double>? metrics = null, string? phase = null,
        double? seconds = null, string? message = null)
    {
        var e = new RunEvent(RunId, state.State.NextSequence++, kind, step, DateTimeOffset.UtcNow, state.State.Status,
            metrics ?? new Dictionary<string, double>(), phase, seconds, message);
        _events.Add(e);
        // Bounded: a watcher asking for trimmed events is told the oldest kept (GetEvents).
        if (_events.Count > eventLog.Capacity) _events.RemoveRange(0, _events.Count - eventLog.Capacity);
        _ = _watchers.Notify(w => w.OnEvent(e));
        state.State.Events.Add(e);
        var tail = Math.Min(EventTail, eventLog.Capacity);
        if (state.State.Events.Count > tail) state.State.Events.RemoveRange(0, state.State.Events.Count - tail);
    }

    async Task PersistAsync()
    {
        await _writeLock.WaitAsync();
        try { await state.WriteStateAsync(); }
        finally { _writeLock.Release(); }
    }

    RunSummary Summary()
    {
        var s = state.State;
        if (s.ConfigJson.Length == 0) throw new RunNotFoundException(RunId);
        return new RunSummary(RunId, s.Name, s.Algorithm, s.Status, s.Step, s.TotalSteps, s.WeightVersion, s.LatestCheckpoint,
            s.CreatedAt, s.Error, s.LastMetrics, s.ConfigJson);
    }
}
