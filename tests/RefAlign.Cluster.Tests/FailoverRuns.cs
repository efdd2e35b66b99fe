using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using RefAlign.Client;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// Running, watching and comparing runs on a <see cref="ProcessCluster"/>: what the failover and freeze tests share,
/// including each config's uninterrupted twin, run once and compared against by every test that faults that config.
/// </summary>
internal sealed partial class FailoverRuns(ProcessCluster cluster)
{
    /// <summary>
    /// What a finished run left: its events, its final checkpoint's tensor bytes (hashed), its learner journal's entries
    /// and the steps they say the final weights contain.
    /// </summary>
    internal sealed record Outcome(RunSummary Summary, IReadOnlyList<RunEvent> Events, string WeightsSha256,
        IReadOnlyList<JournalEntry> Journal, IReadOnlyList<int> Lineage)
    {
        public IReadOnlyList<double> Losses => [.. Events.Where(e => e.Kind == RunEventKind.Step && e.Message is null).Select(e => e.Metrics["loss"])];
    }

    /// <summary>Uninterrupted twins by config (with the run's name left out), per cluster.</summary>
    static readonly ConcurrentDictionary<(ProcessCluster, string), Lazy<Task<Outcome>>> Twins = new();

    /// <summary>The outcome of <paramref name="config"/> run without a fault (computed once per config and cluster).</summary>
    public Task<Outcome> TwinAsync(RefAlignClient client, string config)
    {
        var key = (cluster, NameField().Replace(config, "\"name\": \"\""));
        return Twins.GetOrAdd(key, _ => new Lazy<Task<Outcome>>(async () =>
            await FinishAsync(client, await client.StartRunAsync(NameField().Replace(config, $"\"name\": \"twin-{Guid.NewGuid():N}\"")))))
            .Value;
    }

    [GeneratedRegex("\"name\": \"[^\"]*\"")]
    private static partial Regex NameField();

    /// <summary>Starts <paramref name="config"/> beside its twin and waits until it has finished <paramref name="atStep"/> steps.</summary>
    public async Task<(Outcome Twin, string RunId)> StartBesideTwinAsync(RefAlignClient client, string config, int atStep)
    {
        var twin = await TwinAsync(client, config);
        var runId = await client.StartRunAsync(config);
        await AtStepAsync(client, runId, atStep);
        return (twin, runId);
    }

    /// <summary>A faulted run ended exactly as its uninterrupted twin: the same losses, bitwise the same weights, every step once.</summary>
    public static void AssertExactlyAs(Outcome twin, Outcome outcome, int steps)
    {
        Assert.Equal(twin.Losses, outcome.Losses);
        Assert.Equal(twin.WeightsSha256, outcome.WeightsSha256);
        Assert.Equal(Enumerable.Range(0, steps), outcome.Lineage);
    }

    public async Task<Outcome> FinishAsync(RefAlignClient client, string runId, List<RunEvent>? events = null, TimeSpan? timeout = null)
    {
        events ??= [];
        // Generous: with other work on a 2-core machine, each silo restart of a failover takes most of a minute.
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(6));
        await foreach (var e in client.WatchRunAsync(runId, events.Count == 0 ? 0 : events[^1].Sequence, cts.Token)) events.Add(e);
        var summary = await client.GetRunAsync(runId);
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status} at {summary.Step}: {summary.Error}\n{StatusLines(events)}");
        var checkpoint = summary.LatestCheckpoint!;
        // The final checkpoint's policy (or adapter) and optimizer state, file by file. Not torch's global RNG state: a
        // silo process shares it with every model it loads, and only LoRA dropout reads it (none here).
        var weights = string.Join(' ', Directory.GetFiles(checkpoint, "*.safetensors", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != "rng.safetensors").Order(StringComparer.Ordinal)
            .Select(f => $"{Path.GetRelativePath(checkpoint, f)}={Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))[..16]}"));
        var journal = AppliedStepJournal.Read(JournalOf(runId));
        return new Outcome(summary, events, weights, journal, AppliedStepJournal.Lineage(journal));
    }

    public string JournalOf(string runId) => Path.Combine(cluster.CheckpointRoot, runId, AppliedStepJournal.FileName);

    /// <summary>A run's status events, one line each with its time and the run's status then.</summary>
    public static string StatusLines(IEnumerable<RunEvent> events) =>
        string.Join('\n', events.Where(e => e.Kind == RunEventKind.Status).Select(e => $"{e.Time:HH:mm:ss.f} {e.Status} {e.Message}"));

    /// <summary>The events a running run has logged so far (what its watch sends within <paramref name="seconds"/>).</summary>
    public static async Task<List<RunEvent>> EventsAsync(RefAlignClient client, string runId, int seconds = 5)
    {
        var events = new List<RunEvent>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try { await foreach (var e in client.WatchRunAsync(runId, 0, cts.Token)) events.Add(e); }
        catch (Exception e) when (cts.IsCancellationRequested && e is OperationCanceledException or Grpc.Core.RpcException) { }
        return events;
    }

    /// <summary>Waits until the run has finished <paramref name="step"/> steps.</summary>
    public async Task AtStepAsync(RefAlignClient client, string runId, int step)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        for (var run = await client.GetRunAsync(runId); run.Step < step; run = await client.GetRunAsync(runId))
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"run {runId} did not reach step {step} ({run.Status} at {run.Step}: {run.Error})\n"
                    + $"{StatusLines(await EventsAsync(client, runId))}\n{cluster.Logs(30)}");
            await Task.Delay(100);
        }
    }

    /// <summary>Waits until the run's status is final; fails with its events and the silos' logs otherwise.</summary>
    public async Task<RunSummary> EndedAsync(RefAlignClient client, string runId, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromMinutes(4));
        while (true)
        {
            try
            {
                if (await client.GetRunAsync(runId) is { } run && run.Status.IsFinal()) return run;
            }
            catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Unavailable) { }
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"run {runId} did not end\n{StatusLines(await EventsAsync(client, runId))}\n{cluster.Logs(30)}");
            await Task.Delay(200);
        }
    }
}
