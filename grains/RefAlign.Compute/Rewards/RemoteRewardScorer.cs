using RefAlign.Compute.Training;

namespace RefAlign.Compute.Rewards;

/// <summary>
/// The wire to a <c>RewardService</c>: one batch in, whatever the service answered out (checked by
/// <see cref="RemoteRewardScorer"/>, not here). The gRPC implementation lives with the silo; the compute layer knows no gRPC.
/// </summary>
public interface IRewardTransport : IDisposable
{
    /// <summary>The service's address, for messages.</summary>
    string Address { get; }

    /// <summary>One call carrying <paramref name="apiKey"/>; ends by <paramref name="deadline"/> or when cancelled.</summary>
    Task<IReadOnlyList<double>> ScoreAsync(RewardInputs batch, string apiKey, DateTime deadline, CancellationToken cancellation);
}

/// <summary>
/// A remote reward failed for good: the service answered wrongly or not at all within its retry budget. The message
/// names the service; the run's fault policy retries the attempt as it would after losing a worker.
/// </summary>
public sealed class RemoteRewardException(string service, string message, Exception? inner = null)
    : Exception($"remote reward service {service}: {message}", inner)
{
    public string Service { get; } = service;
}

/// <summary>
/// Calls a remote reward (docs/algorithms.md §9) with the run's rules: batches of <c>batch_size</c>, at most
/// <c>max_concurrency</c> calls in flight per run and service, a deadline per call, <c>retries</c> further tries with
/// backoff. A call fails (and is retried) when the service errs, misses its deadline, or answers with the wrong number
/// of scores, a NaN or infinity, or a score outside [min_score, max_score]; a score is never made up.
/// </summary>
public sealed class RemoteRewardScorer(RewardSpec spec, IRewardTransport transport) : IDisposable
{
    readonly SemaphoreSlim _slots = new(spec.MaxConcurrency ?? RewardSpec.DefaultMaxConcurrency);
    readonly TimeSpan _timeout = TimeSpan.FromSeconds(spec.TimeoutSeconds ?? RewardSpec.DefaultTimeoutSeconds);
    readonly int _retries = spec.Retries ?? RewardSpec.DefaultRetries;
    readonly (double Min, double Max) _range = (spec.MinScore ?? RewardSpec.DefaultMinScore, spec.MaxScore ?? RewardSpec.DefaultMaxScore);

    public string Service => transport.Address;

    /// <summary>Calls that failed and were tried again (for tests and metrics).</summary>
    public int Retried => _retried;

    int _retried;

    public async Task<IReadOnlyList<double>> ScoreAsync(RewardInputs inputs, CancellationToken cancellation)
    {
        var key = Environment.GetEnvironmentVariable(spec.ApiKeyEnv ?? "") is { Length: > 0 } k ? k
            : throw new RemoteRewardException(Service, $"the environment variable '{spec.ApiKeyEnv}' (api_key_env) that holds its key is not set on this host.");
        var size = spec.BatchSize ?? RewardSpec.DefaultBatchSize;
        var calls = new List<Task<IReadOnlyList<double>>>();
        for (var start = 0; start < inputs.Count; start += size)
            calls.Add(CallAsync(inputs.Slice(start, Math.Min(size, inputs.Count - start)), key, cancellation));
        return [.. (await Task.WhenAll(calls)).SelectMany(x => x)];
    }

    async Task<IReadOnlyList<double>> CallAsync(RewardInputs batch, string key, CancellationToken cancellation)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await _slots.WaitAsync(cancellation);
                try
                {
                    using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
                    deadline.CancelAfter(_timeout);
                    IReadOnlyList<double> scores;
                    try { scores = await transport.ScoreAsync(batch, key, DateTime.UtcNow + _timeout, deadline.Token).WaitAsync(deadline.Token); }
                    catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
                    {
                        throw new TimeoutException($"no answer within its deadline of {_timeout.TotalSeconds:0.###} s");
                    }
                    return Checked(scores, batch.Count);
                }
                finally { _slots.Release(); }
            }
            catch (Exception e) when (!cancellation.IsCancellationRequested)
            {
                if (attempt >= _retries)
                    throw new RemoteRewardException(Service, $"{attempt + 1} tries failed; the last: {Describe(e)}", e);
                Interlocked.Increment(ref _retried);
                await Task.Delay(TimeSpan.FromMilliseconds(200 * (1 << Math.Min(attempt, 5))), cancellation);
            }
        }
    }

    IReadOnlyList<double> Checked(IReadOnlyList<double> scores, int expected)
    {
        if (scores.Count != expected) throw new InvalidDataException($"answered {scores.Count} scores for {expected} texts");
        for (var i = 0; i < scores.Count; i++)
        {
            if (!double.IsFinite(scores[i])) throw new InvalidDataException($"score {i} is {scores[i]}");
            if (scores[i] < _range.Min || scores[i] > _range.Max)
                throw new InvalidDataException($"score {i} is {scores[i]}, outside [{_range.Min}, {_range.Max}] (min_score, max_score)");
        }
        return scores;
    }

    static string Describe(Exception e) => e is InvalidDataException or TimeoutException ? e.Message : $"{e.GetType().Name}: {e.Message}";

    public void Dispose()
    {
        _slots.Dispose();
        transport.Dispose();
    }
}
