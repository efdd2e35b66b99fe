using System.Threading.Channels;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;

namespace RefAlign.Grains;

/// <summary>
/// One watcher's end of a run's pushed events: the run grain writes, the gRPC stream reads in sequence order. Orleans
/// does not order one-way messages, so early arrivals wait here for the events before them.
/// </summary>
internal sealed class RunEventChannel : IRunEventObserver
{
    /// <summary>How long an out-of-order arrival waits for the missing events before the watcher re-reads the log.</summary>
    static readonly TimeSpan GapPatience = TimeSpan.FromSeconds(1);

    readonly Channel<RunEvent> _channel = Channel.CreateUnbounded<RunEvent>(new UnboundedChannelOptions { SingleReader = true });
    readonly SortedDictionary<long, RunEvent> _early = [];

    public Task OnEvent(RunEvent e)
    {
        _channel.Writer.TryWrite(e);
        return Task.CompletedTask;
    }

    /// <summary>
    /// The pushed event right after <paramref name="last"/>; null when nothing arrives within <paramref name="patience"/>
    /// or a gap does not close soon (the caller then catches up from the log).
    /// </summary>
    public async Task<RunEvent?> NextAsync(long last, TimeSpan patience, CancellationToken cancellation)
    {
        foreach (var stale in _early.Keys.Where(s => s <= last).ToList()) _early.Remove(stale);
        var deadline = DateTime.UtcNow + patience;
        while (true)
        {
            if (_early.Remove(last + 1, out var next)) return next;
            var wait = _early.Count > 0 ? GapPatience : deadline - DateTime.UtcNow;
            if (wait <= TimeSpan.Zero || await ReadAsync(wait, cancellation) is not { } e) return null;
            if (e.Sequence > last) _early[e.Sequence] = e;
        }
    }

    async Task<RunEvent?> ReadAsync(TimeSpan wait, CancellationToken cancellation)
    {
        if (_channel.Reader.TryRead(out var ready)) return ready;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(wait);
        try
        {
            return await _channel.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            return null;
        }
    }
}
