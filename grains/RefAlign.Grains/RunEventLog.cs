using Microsoft.Extensions.Logging;
using Orleans.Utilities;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;

namespace RefAlign.Grains;

/// <summary>
/// A run's event log. Appended events stay pending until the state that holds them is written; only then do watchers
/// see them (pushed, and in <see cref="After"/>), so a sequence number a watcher has seen is never reused after a
/// crash. In memory it keeps the newest <c>capacity</c> events; the state keeps a shorter tail for a reactivated grain.
/// </summary>
internal sealed class RunEventLog(string runId, int capacity, ILogger logger)
{
    /// <summary>Events persisted with the run's state (what a grain reactivated after a silo loss replays to watchers).</summary>
    const int PersistedTail = 200;

    readonly List<RunEvent> _published = [];
    readonly List<RunEvent> _pending = [];
    readonly ObserverManager<IRunEventObserver> _watchers = new(TimeSpan.FromMinutes(1), logger);

    public void Load(IEnumerable<RunEvent> persisted) => _published.AddRange(persisted);

    /// <summary>
    /// Numbers the event from the state's sequence and puts it in the state's tail; watchers see it once published. A status
    /// event carries the status it was decided at (<paramref name="status"/>), which the state may have left since.
    /// </summary>
    public void Append(RunState state, RunEventKind kind, int step, IReadOnlyDictionary<string, double>? metrics = null, string? phase = null,
        double? seconds = null, string? message = null, RunStatus? status = null)
    {
        var e = new RunEvent(runId, state.NextSequence++, kind, step, DateTimeOffset.UtcNow, status ?? state.Status,
            metrics ?? new Dictionary<string, double>(), phase, seconds, message);
        _pending.Add(e);
        state.Events.Add(e);
        var tail = Math.Min(PersistedTail, capacity);
        if (state.Events.Count > tail) state.Events.RemoveRange(0, state.Events.Count - tail);
    }

    /// <summary>Called once the state holding the pending events is written: they become visible and are pushed.</summary>
    public void Publish()
    {
        foreach (var e in _pending)
        {
            _published.Add(e);
            _ = _watchers.Notify(w => w.OnEvent(e));
        }
        _pending.Clear();
        if (_published.Count > capacity) _published.RemoveRange(0, _published.Count - capacity);
    }

    /// <summary>Published events after <paramref name="afterSequence"/>; throws when some were trimmed.</summary>
    public IReadOnlyList<RunEvent> After(long afterSequence, int max)
    {
        if (_published.Count > 0 && afterSequence < _published[0].Sequence - 1) throw new RunEventsTrimmedException(runId, _published[0].Sequence);
        // Sequences are consecutive, so the first wanted event's index follows from the oldest kept one.
        var start = _published.Count == 0 ? 0 : (int)Math.Clamp(afterSequence + 1 - _published[0].Sequence, 0, _published.Count);
        return _published.GetRange(start, Math.Min(max, _published.Count - start));
    }

    public void Subscribe(IRunEventObserver observer) => _watchers.Subscribe(observer, observer);

    public void Unsubscribe(IRunEventObserver observer) => _watchers.Unsubscribe(observer);
}
