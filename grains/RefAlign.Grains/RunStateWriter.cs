using Microsoft.Extensions.Logging;

namespace RefAlign.Grains;

/// <summary>
/// Writes a run's state one write at a time, retrying while grain storage is unreachable (Redis restarting: 1 s,
/// doubling up to 10 s, for up to <c>Timing:StateWriteRetryLimit</c>). The run waits here, so nothing runs ahead of what is durable. An
/// <see cref="Orleans.Storage.InconsistentStateException"/> (another activation wrote since) is not retried.
/// </summary>
internal sealed class RunStateWriter(IPersistentState<RunState> state, ILogger logger, string runId, TimeSpan retryLimit)
{
    readonly SemaphoreSlim _lock = new(1, 1);

    /// <summary>Writes the state, then runs <paramref name="written"/> (still under the lock: e.g. publishing the events it holds).</summary>
    public async Task WriteAsync(Action written)
    {
        await _lock.WaitAsync();
        try
        {
            var deadline = DateTime.UtcNow + retryLimit;
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await state.WriteStateAsync();
                    break;
                }
                catch (Exception e) when (e is not Orleans.Storage.InconsistentStateException && DateTime.UtcNow < deadline)
                {
                    var delay = TimeSpan.FromSeconds(Math.Min(Math.Pow(2, attempt - 1), 10));
                    logger.LogWarning(e, "run {Run}: grain storage unavailable; retrying the write in {Delay}", runId, delay);
                    await Task.Delay(delay);
                }
            }
            written();
        }
        finally
        {
            _lock.Release();
        }
    }
}
