using System.Net.Sockets;
using System.Text.RegularExpressions;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// Which failures a lost or draining silo causes (worth retrying elsewhere), and retrying them: a worker call that
/// fails so is sent again, with backoff, and Orleans places the worker on a surviving silo.
/// </summary>
public static partial class ClusterFaults
{
    /// <summary>
    /// How long a worker call keeps retrying: long enough for membership to declare a killed silo dead (its probes time
    /// out) so that the worker is re-placed.
    /// </summary>
    public static readonly TimeSpan WorkerRetryBudget = TimeSpan.FromMinutes(2);

    const string PollyTimeout = "Polly.Timeout.TimeoutRejectedException";

    /// <summary>True for the failures a silo's loss or shutdown causes, as opposed to a bad config or a bug.</summary>
    public static bool IsTransient(Exception e) => e switch
    {
        AggregateException a => a.InnerExceptions.All(IsTransient),
        SiloUnavailableException or OrleansMessageRejectionException or SiloDrainingException or LearnerNotReadyException or TimeoutException => true,
        // The runtime's own call timeouts (Polly's), which cannot cross a grain boundary: the caller sees the codec error.
        _ when e.GetType().FullName == PollyTimeout => true,
        Orleans.Serialization.CodecNotFoundException when e.Message.Contains(PollyTimeout, StringComparison.Ordinal) => true,
        IOException or SocketException => true,
        // Cancelled by the runtime, not by us (e.g. the grain directory recovering a range a lost silo owned): the
        // callers' own cancellations are checked before this is asked.
        OperationCanceledException => true,
        // Lost connections, forwarding failures and the like surface as plain OrleansException.
        NoSiloForRoleException => false,
        OrleansException => true,
        _ => false,
    };

    /// <summary>The silo a lost-silo error names (e.g. <c>S127.0.0.3:11111:123</c>) other than <paramref name="here"/>, or null.</summary>
    public static string? LostSilo(Exception e, string? here = null) =>
        SiloAddressPattern().Matches(e.ToString()).Select(m => m.Value).FirstOrDefault(a => here is null || !here.Contains(a[1..], StringComparison.Ordinal));

    [GeneratedRegex(@"S\d{1,3}(\.\d{1,3}){3}:\d+:\d+")]
    private static partial Regex SiloAddressPattern();

    /// <summary>
    /// Runs <paramref name="call"/>, again after transient failures, until <see cref="WorkerRetryBudget"/> is spent or
    /// <paramref name="cancellation"/> is cancelled (checked between tries). <paramref name="abandon"/> ends the wait at
    /// once, even for a call whose reply never comes.
    /// </summary>
    public static async Task<T> RetryAsync<T>(Func<Task<T>> call, CancellationToken cancellation, Action<Exception, TimeSpan>? onRetry = null,
        CancellationToken abandon = default)
    {
        var deadline = DateTime.UtcNow + WorkerRetryBudget;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call().WaitAsync(abandon);
            }
            // A learner that is not ready is the run loop's to fix (it initializes and resumes the learner), not a worker's.
            catch (Exception e) when (IsTransient(e) && e is not LearnerNotReadyException && DateTime.UtcNow < deadline
                && !cancellation.IsCancellationRequested && !abandon.IsCancellationRequested)
            {
                var delay = TimeSpan.FromMilliseconds(Math.Min(250 * Math.Pow(2, attempt - 1), 8000));
                onRetry?.Invoke(e, delay);
                await Task.Delay(delay, cancellation);
            }
        }
    }
}
