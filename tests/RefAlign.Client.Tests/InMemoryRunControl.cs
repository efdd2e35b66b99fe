using System.Runtime.CompilerServices;
using System.Text.Json;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Grains;

namespace RefAlign.Client.Tests;

// The server's records, not the client's (this namespace sits inside RefAlign.Client).
using ClusterInfo = RefAlign.Contracts.Control.ClusterInfo;
using GeneratorInfo = RefAlign.Contracts.Control.GeneratorInfo;
using RunEvent = RefAlign.Contracts.Control.RunEvent;
using RunEventKind = RefAlign.Contracts.Control.RunEventKind;
using RunStatus = RefAlign.Contracts.Control.RunStatus;
using RunSummary = RefAlign.Contracts.Control.RunSummary;
using SiloInfo = RefAlign.Contracts.Control.SiloInfo;
using PlacementInfo = RefAlign.Contracts.Control.PlacementInfo;
using RunEvalRequest = RefAlign.Contracts.Control.RunEvalRequest;
using RunEvalResult = RefAlign.Contracts.Control.RunEvalResult;

/// <summary>
/// The API layer's test backend: runs kept in memory, events appended by the test (<see cref="Step"/>,
/// <see cref="Complete"/>), real config validation. It outlives server restarts, as a cluster outlives one gateway.
/// </summary>
internal sealed class InMemoryRunControl : IRunControl
{
    sealed class Entry(RunSummary summary)
    {
        public RunSummary Summary = summary;
        public readonly List<RunEvent> Events = [];
        public TaskCompletionSource Changed = NewSignal();
        public long KeepFrom = 1;
    }

    readonly Lock _gate = new();
    readonly Dictionary<string, Entry> _runs = new(StringComparer.Ordinal);
    int _next;
    int _watchCalls;
    CancellationTokenSource _abort = new();
    bool _cleanClose;

    public ClusterInfo Cluster { get; set; } = new(
        [new SiloInfo("127.0.0.1:11111@1", "silo-a", ["learner", "generator"], "cpu", "Active", 7),
         new SiloInfo("127.0.0.1:11112@1", "silo-b", ["generator", "scorer"], "cuda:0", "Active", 3)],
        [new GeneratorInfo("rollout/run-1/0", "run-1", 4, "127.0.0.1:11111@1")],
        [new PlacementInfo("learner", "run-1", "run-1", "127.0.0.1:11112@1", 4), new PlacementInfo("generator", "run-1/0", "run-1", "127.0.0.1:11111@1", 4)]);

    /// <summary>How many WatchRun calls reached the backend (a reconnecting watcher makes several).</summary>
    public int WatchCalls => Volatile.Read(ref _watchCalls);

    public Task<string> StartRunAsync(string configJson, CancellationToken cancellation = default)
    {
        var config = RunConfig.Parse(configJson).Validate(requirePaths: false);
        var id = $"{config.Name}-{Interlocked.Increment(ref _next)}";
        var algorithm = JsonSerializer.Serialize(config.Algorithm, RunConfig.Json).Trim('"');
        var summary = new RunSummary(id, config.Name, algorithm, RunStatus.Running, 0, config.MaxSteps ?? 10, 0, null,
            DateTimeOffset.UtcNow, null, new Dictionary<string, double>(), configJson);
        lock (_gate)
        {
            var e = new Entry(summary);
            _runs.Add(id, e);
            Append(e, RunEventKind.Status, 0, new Dictionary<string, double>(), message: "started");
        }
        return Task.FromResult(id);
    }

    public Task<RunSummary> GetRunAsync(string runId, CancellationToken cancellation = default)
    {
        // As a cluster answers while a silo goes away under the call (the service maps it to UNAVAILABLE).
        if (Interlocked.Decrement(ref _failGets) >= 0) throw new TimeoutException("a silo went away under the call");
        lock (_gate) return Task.FromResult(Find(runId).Summary);
    }

    int _failGets;

    /// <summary>The next <paramref name="count"/> GetRun calls fail the way a lost silo makes them fail.</summary>
    public void FailNextGets(int count) => Volatile.Write(ref _failGets, count);

    public Task StopRunAsync(string runId, CancellationToken cancellation = default)
    {
        lock (_gate)
        {
            var e = Find(runId);
            if (e.Summary.Status is RunStatus.Running or RunStatus.Pending) SetStatus(e, RunStatus.Stopped, "stopped by request");
        }
        return Task.CompletedTask;
    }

    public Task ResumeRunAsync(string runId, CancellationToken cancellation = default)
    {
        lock (_gate)
        {
            var e = Find(runId);
            if (e.Summary.Status == RunStatus.Completed) throw new InvalidOperationException($"run '{runId}' has completed; nothing to resume.");
            SetStatus(e, RunStatus.Running, "resumed");
        }
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<RunSummary>> ListRunsAsync(CancellationToken cancellation = default)
    {
        lock (_gate) return Task.FromResult<IReadOnlyList<RunSummary>>([.. _runs.Values.Select(e => e.Summary)]);
    }

    public Task<ClusterInfo> GetClusterAsync(CancellationToken cancellation = default) => Task.FromResult(Cluster);

    /// <summary>The evaluation this backend answers with (a real one needs models and silos: the cluster and CLI tests).</summary>
    public RunEvalResult Evaluation { get; set; } = new([], []);

    /// <summary>The last evaluation request that reached the backend.</summary>
    public RunEvalRequest? LastEvaluation { get; private set; }

    public async IAsyncEnumerable<RunEvalProgress> EvaluateRunAsync(RunEvalRequest request,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        await GetRunAsync(request.RunId, cancellation);
        LastEvaluation = request;
        var models = Evaluation.Models.Count;
        for (var m = 0; m < models; m++) yield return new RunEvalProgress(Evaluation.Models[m].Model, m, models, 1, 2);
        yield return new RunEvalProgress(models == 0 ? "" : Evaluation.Models[^1].Model, Math.Max(0, models - 1), models, 2, 2, Evaluation);
    }

    public async IAsyncEnumerable<RunEvent> WatchRunAsync(string runId, long afterSequence,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        Interlocked.Increment(ref _watchCalls);
        var next = afterSequence;
        while (true)
        {
            RunEvent[] batch;
            Task changed;
            bool ended;
            lock (_gate)
            {
                var e = Find(runId);
                // A bounded log, as the run grain keeps: events before KeepFrom are gone.
                if (e.KeepFrom > next + 1) throw new RunEventsTrimmedException(runId, e.KeepFrom);
                batch = [.. e.Events.Where(x => x.Sequence > next)];
                changed = e.Changed.Task;
                ended = e.Summary.Status is RunStatus.Stopped or RunStatus.Completed or RunStatus.Failed;
            }
            foreach (var ev in batch)
            {
                next = ev.Sequence;
                yield return ev;
            }
            if (batch.Length > 0) continue;
            if (ended) yield break;
            CancellationToken abort;
            bool clean;
            lock (_gate) (abort, clean) = (_abort.Token, _cleanClose);
            using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellation, abort);
            var closed = false;
            try
            {
                await changed.WaitAsync(either.Token);
            }
            catch (OperationCanceledException) when (clean && abort.IsCancellationRequested && !cancellation.IsCancellationRequested)
            {
                closed = true;
            }
            if (closed) yield break;
        }
    }

    /// <summary>Appends the phase events and the step event of the run's next step.</summary>
    public void Step(string runId, IReadOnlyDictionary<string, double> metrics, params (string Phase, double Seconds)[] phases)
    {
        lock (_gate)
        {
            var e = Find(runId);
            var step = e.Summary.Step + 1;
            foreach (var (phase, seconds) in phases)
                Append(e, RunEventKind.Phase, step, new Dictionary<string, double>(), phase, seconds);
            e.Summary = e.Summary with { Step = step, WeightVersion = step, LastMetrics = metrics, LatestCheckpoint = $"runs/{runId}/step-{step}" };
            Append(e, RunEventKind.Step, step, metrics);
        }
    }

    /// <summary>
    /// Ends every open watch, as a silo shutting down does: with an OperationCanceledException that is not the
    /// caller's, or (<paramref name="cleanly"/>) by ending the stream although the run goes on.
    /// </summary>
    public void AbortWatches(bool cleanly = false)
    {
        CancellationTokenSource old;
        lock (_gate) (old, _abort, _cleanClose) = (_abort, new CancellationTokenSource(), cleanly);
        old.Cancel();
        old.Dispose();
    }

    public void Complete(string runId)
    {
        lock (_gate) SetStatus(Find(runId), RunStatus.Completed, "done");
    }

    /// <summary>Forgets the events before <paramref name="sequence"/>, as a run's bounded log does.</summary>
    public void KeepFrom(string runId, long sequence)
    {
        lock (_gate) Find(runId).KeepFrom = sequence;
    }

    public IReadOnlyList<RunEvent> Events(string runId)
    {
        lock (_gate) return [.. Find(runId).Events];
    }

    Entry Find(string runId) => _runs.TryGetValue(runId, out var e) ? e : throw new RunNotFoundException(runId);

    void SetStatus(Entry e, RunStatus status, string message)
    {
        e.Summary = e.Summary with { Status = status };
        Append(e, RunEventKind.Status, e.Summary.Step, new Dictionary<string, double>(), message: message);
    }

    // Caller holds _gate.
    static void Append(Entry e, RunEventKind kind, int step, IReadOnlyDictionary<string, double> metrics,
        string? phase = null, double? seconds = null, string? message = null)
    {
        e.Events.Add(new RunEvent(e.Summary.RunId, e.Events.Count + 1, kind, step, DateTimeOffset.UtcNow, e.Summary.Status,
            metrics, phase, seconds, message));
        var old = e.Changed;
        e.Changed = NewSignal();
        old.TrySetResult();
    }

    static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
