using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;

namespace RefAlign.Grains;

/// <summary>The cluster's runs as the registry and the running runs' grains tell them.</summary>
public static class RunListing
{
    /// <summary>
    /// Ended runs from the registry's stored summaries; only the others are asked. Asking every run would activate each
    /// one ever started: after a restart of the whole cluster that took one listing past 30 s.
    /// </summary>
    public static async Task<IReadOnlyList<RunSummary>> ListAsync(IGrainFactory grains)
    {
        var view = await grains.GetGrain<IRunRegistryGrain>(0).View();
        var listed = await Task.WhenAll(view.RunIds.Select(id => view.Ended.TryGetValue(id, out var ended) ? Task.FromResult<RunSummary?>(ended) : StartedAsync(grains, id)));
        return [.. listed.OfType<RunSummary>()];
    }

    /// <summary>
    /// The run's summary, or null while it has no config: a start registers the id just before the run takes its config,
    /// so a listing between the two (another start's capacity check) must not fail on it.
    /// </summary>
    static async Task<RunSummary?> StartedAsync(IGrainFactory grains, string runId)
    {
        try { return await grains.GetGrain<ITrainingRunGrain>(runId).GetSummary(); }
        catch (RunNotFoundException) { return null; }
    }
}
