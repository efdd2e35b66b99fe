using RefAlign.Contracts.Control;
using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// Watches a run while its reward service at <paramref name="url"/> goes away at step 2 and comes back on the same
/// address once an attempt fails naming it; returns the run's events and whether such a failure was seen.
/// </summary>
static class RewardServiceOutage
{
    public static async Task<(List<RunEvent> Events, bool FailureSeen)> WatchAsync(IRunControl control, string runId, string url,
        Func<Task> takeDown, Func<Task> bringBack)
    {
        var events = new List<RunEvent>();
        using var watch = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var (down, failureSeen) = (false, false);
        await foreach (var e in control.WatchRunAsync(runId, 0, watch.Token))
        {
            events.Add(e);
            if (!down && e.Kind == RunEventKind.Step && e.Step >= 2)
            {
                await takeDown();
                down = true;
            }
            if (down && !failureSeen && e.Kind == RunEventKind.Status && e.Message?.Contains(url, StringComparison.Ordinal) == true)
            {
                failureSeen = true;
                await bringBack();
            }
        }
        return (events, failureSeen);
    }

    public static string StatusLines(IEnumerable<RunEvent> events) =>
        string.Join("\n", events.Where(e => e.Kind == RunEventKind.Status).Select(e => e.Message));
}
