using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// The learners active on this silo, so that a silo's shutdown can drain them: each checkpoints at once (into the
/// shared checkpoint root) and refuses further steps, and its run resumes from that checkpoint on another learner silo
/// without replaying anything.
/// </summary>
public sealed class LocalLearners(IGrainFactory grains, SiloDrain drain, ILogger<LocalLearners> logger)
{
    readonly ConcurrentDictionary<string, bool> _runs = new(StringComparer.Ordinal);

    internal void Add(string runId) => _runs[runId] = true;

    internal void Remove(string runId) => _runs.TryRemove(runId, out _);

    public IReadOnlyList<string> RunIds => [.. _runs.Keys];

    /// <summary>Marks the silo draining and checkpoints every local learner; failures are logged, not thrown.</summary>
    public async Task DrainAsync(CancellationToken cancellation)
    {
        drain.Begin();
        await Task.WhenAll(RunIds.Select(async runId =>
        {
            try
            {
                await grains.GetGrain<ILearnerGrain>(runId).Drain().WaitAsync(cancellation);
            }
            catch (Exception e)
            {
                logger.LogError(e, "could not checkpoint the learner of run {Run} for shutdown; it resumes from its previous checkpoint", runId);
            }
        }));
    }
}
