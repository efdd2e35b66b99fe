using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using RefAlign.Compute.Telemetry;
using RefAlign.Contracts.Control;
using RefAlign.Compute.Training;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// The run's stall watch on the three-silo cluster: a Generate call the cluster loses (held forever by
/// <see cref="LostCalls"/>) stalls one attempt; the watch abandons it after <c>distributed.stall_timeout_seconds</c>,
/// the next attempt continues from the learner's state, and the run ends exactly as the single-process trainer's.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class StallWatchTests(ClusterFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public async Task A_lost_generate_call_costs_one_abandoned_attempt_and_the_run_matches_the_single_process_trainer()
    {
        const int steps = 4;
        var config = fixture.RefAlignConfig("ra-lost-call", seed: 9, steps: steps);
        config = config with { Distributed = config.Distributed with { StallTimeoutSeconds = 5 } };
        // The failed-attempts counter, as /metrics exports it, read in this process (the in-process silos share its meters).
        var failures = new ConcurrentQueue<(string? Run, string? Reason)>();
        // Read before the listener starts: its callback runs inside the meter's type initializer if that comes later.
        var counter = TrainingTelemetry.FailedAttempts;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument == counter) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var all = tags.ToArray();
            string? Tag(string key) => all.FirstOrDefault(t => t.Key == key).Value as string;
            for (var i = 0; i < value; i++) failures.Enqueue((Tag(TrainingTelemetry.Tags.RunId), Tag(TrainingTelemetry.Tags.Reason)));
        });
        listener.Start();
        ClusterFixture.LostCalls.HoldOnce("ra-lost-call-", step: 2);
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(3));
        foreach (var e in events.Where(e => e.Kind == RunEventKind.Status)) output.WriteLine($"status at step {e.Step}: {e.Message}");
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        Assert.Equal(1, ClusterFixture.LostCalls.Held);
        Assert.Contains((runId, "stalled"), failures);

        // The stalled attempt was abandoned and said so, and the next one went on at the step it stalled in.
        Assert.Contains(events, e => e.Kind == RunEventKind.Status && e.Step == 2
            && e.Message!.Contains("no step finished within 5 s (distributed.stall_timeout_seconds)", StringComparison.Ordinal));
        Assert.Contains(events, e => e.Kind == RunEventKind.Status && e.Message!.StartsWith("recovered after a stalled attempt", StringComparison.Ordinal));
        // Every step once, none replayed: the learner never saw the lost step.
        var stepEvents = events.Where(e => e.Kind == RunEventKind.Step).ToList();
        Assert.Equal(Enumerable.Range(1, steps), stepEvents.Select(e => e.Step));
        Assert.All(stepEvents, e => Assert.Null(e.Message));

        var local = RunRecorder.RunLocally(config with { OutputDir = Path.Combine(fixture.Root, "local", "ra-lost-call") });
        foreach (var key in new[] { "loss", "reward/mean" })
        {
            var expected = local.Steps.Select(s => s.Metrics[key]).ToList();
            var actual = stepEvents.Select(e => e.Metrics[key]).ToList();
            output.WriteLine($"{key}: local [{string.Join(", ", expected.Select(x => x.ToString("F6")))}] cluster [{string.Join(", ", actual.Select(x => x.ToString("F6")))}]");
            for (var i = 0; i < steps; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4, $"{key} at step {i + 1}: local {expected[i]:R}, cluster {actual[i]:R}");
        }
        Assert.Equal(steps, local.Steps.Select(s => s.Metrics["loss"]).Distinct().Count());
    }
}
