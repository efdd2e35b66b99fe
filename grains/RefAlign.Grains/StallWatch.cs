using System.Globalization;

namespace RefAlign.Grains;

/// <summary>
/// One attempt's stall watch: <see cref="Token"/> is cancelled when <see cref="Progress"/> has not been called for
/// <c>distributed.stall_timeout_seconds</c> (0: never), e.g. because a grain call the attempt waits on was lost with a
/// silo after being forwarded there, and would otherwise hold the run until its response timeout.
/// </summary>
internal sealed class StallWatch(double seconds) : IDisposable
{
    readonly CancellationTokenSource _cts = new();

    public CancellationToken Token => _cts.Token;

    public bool Fired => _cts.IsCancellationRequested;

    public string Error => string.Create(CultureInfo.InvariantCulture,
        $"no step finished within {seconds:0} s (distributed.stall_timeout_seconds); the attempt was abandoned");

    /// <summary>The attempt made progress: the watch starts over.</summary>
    public void Progress()
    {
        if (seconds > 0) _cts.CancelAfter(TimeSpan.FromSeconds(seconds));
    }

    public void Dispose() => _cts.Dispose();
}
