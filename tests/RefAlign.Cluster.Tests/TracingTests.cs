using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Compute.Telemetry;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A RefAlign step on the three silos is one trace whose phase spans nest across grain calls, exported over OTLP/gRPC
/// to a real receiver. The silos share this process, so one tracer provider records every silo's spans; the cluster
/// propagates context on every grain call (<c>AddActivityPropagation</c> on silos and client).
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class TracingTests(ClusterFixture fixture)
{
    const string ServiceName = "refalign-cluster-under-test";

    [Fact]
    public async Task A_refalign_step_is_one_trace_with_phase_spans_nested_across_silos()
    {
        await using var receiver = new OtlpTraceReceiver();
        await receiver.StartAsync();
        string runId;
        using (var tracing = Sdk.CreateTracerProviderBuilder()
                   .SetResourceBuilder(ResourceBuilder.CreateDefault().AddService(ServiceName))
                   .AddSource(TrainingTelemetry.Name, "Microsoft.Orleans.Application", "Microsoft.Orleans.Runtime")
                   .SetSampler(new AlwaysOnSampler())
                   .AddOtlpExporter(o =>
                   {
                       o.Endpoint = new Uri(receiver.Endpoint);
                       o.Protocol = OtlpExportProtocol.Grpc;
                       o.BatchExportProcessorOptions.ScheduledDelayMilliseconds = 100;
                       o.BatchExportProcessorOptions.MaxQueueSize = 1 << 16;
                   })
                   .Build())
        {
            var config = fixture.RefAlignConfig("traced", seed: 13, steps: 2);
            runId = await fixture.Control.StartRunAsync(config.ToJson());
            var (summary, _) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(2));
            Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
            Assert.True(tracing.ForceFlush(10_000));
        }

        bool Ours(ReceivedSpan s) => s.Attribute(TrainingTelemetry.Tags.RunId) == runId;
        var spans = await receiver.WaitForAsync(s => s.Count(x => Ours(x) && x.Name == "learner.step") == 2, TimeSpan.FromSeconds(15));
        Assert.All(spans, s => Assert.Equal(ServiceName, s.ServiceName));
        var byId = spans.GroupBy(s => s.SpanId).ToDictionary(g => g.Key, g => g.First());

        // Step 1: the first step that needs the learner's new weights, so the generators sync before sampling.
        const string step = "1";
        var stepSpan = Assert.Single(spans, s => Ours(s) && s.Name == TrainingTelemetry.Phases.Step && s.Attribute(TrainingTelemetry.Tags.Step) == step);
        var traceId = stepSpan.TraceId;
        var stepZero = Assert.Single(spans, s => Ours(s) && s.Name == TrainingTelemetry.Phases.Step && s.Attribute(TrainingTelemetry.Tags.Step) == "0");
        Assert.NotEqual(stepZero.TraceId, traceId); // one trace per step

        // Every RefAlign span of this step carries the run attributes and belongs to the step's trace.
        var phases = spans.Where(s => Ours(s) && s.Attribute(TrainingTelemetry.Tags.Step) == step && s.Scope == TrainingTelemetry.Name).ToList();
        Assert.All(phases, s =>
        {
            Assert.Equal(traceId, s.TraceId);
            Assert.NotNull(s.Attribute(TrainingTelemetry.Tags.WeightVersion));
            Assert.Equal(s.Name, s.Attribute(TrainingTelemetry.Tags.Phase));
        });
        Assert.Equal("1", stepSpan.Attribute(TrainingTelemetry.Tags.WeightVersion));

        ReceivedSpan Child(ReceivedSpan parent, string name) =>
            Assert.Single(phases, s => s.Name == name && s.ParentId == parent.SpanId);

        // step → generate, score, learn: same grain, direct children.
        var generate = Child(stepSpan, TrainingTelemetry.Phases.Generate);
        var score = Child(stepSpan, TrainingTelemetry.Phases.Score);
        var learn = Child(stepSpan, TrainingTelemetry.Phases.Learn);

        // generate → generate.shard on each generator grain (one per shard), reached through Orleans call spans.
        var shards = phases.Where(s => s.Name == "generate.shard").ToList();
        Assert.Equal(2, shards.Count);
        Assert.Equal([$"{runId}/0", $"{runId}/1"], shards.Select(s => s.Attribute(TrainingTelemetry.Tags.Shard)).Order());
        foreach (var shard in shards)
        {
            AssertDescendsViaGrainCall(shard, generate, byId);
            Assert.Equal("1", shard.Attribute(TrainingTelemetry.Tags.WeightVersion)); // sampled with the synced weights
            var generator = fixture.Client.GetGrain<IRolloutGeneratorGrain>(shard.Attribute(TrainingTelemetry.Tags.Shard)!);
            Assert.Contains(await fixture.WhereIsAsync(generator), new[] { ClusterFixture.SiloB, ClusterFixture.SiloC });
        }

        // generate → weight_sync in each stale generator, and the learner's weight calls under it.
        var syncs = phases.Where(s => s.Name == TrainingTelemetry.Phases.WeightSync).ToList();
        Assert.Equal(2, syncs.Count);
        foreach (var sync in syncs)
        {
            AssertDescendsViaGrainCall(sync, generate, byId);
            Assert.Contains(spans, s => s.TraceId == traceId && s.Scope == "Microsoft.Orleans.Application"
                && Ancestors(s, byId).Any(a => a.SpanId == sync.SpanId));
        }

        // score → the BERTScore workers (grain calls only; the scorer opens no phase span of its own).
        Assert.Contains(spans, s => s.TraceId == traceId && s.Scope == "Microsoft.Orleans.Application" && s.ParentId == score.SpanId);

        // learn → learner.step on the learner grain.
        var learnerStep = Assert.Single(phases, s => s.Name == "learner.step");
        AssertDescendsViaGrainCall(learnerStep, learn, byId);
        Assert.Equal(ClusterFixture.SiloA, await fixture.WhereIsAsync(fixture.Client.GetGrain<ILearnerGrain>(runId)));

        // Nothing from the other step leaked into this trace.
        Assert.DoesNotContain(spans, s => s.TraceId == traceId && Ours(s) && s.Attribute(TrainingTelemetry.Tags.Step) is { } st && st != step);
    }

    /// <summary><paramref name="span"/> has <paramref name="ancestor"/> above it, with Orleans call spans in between.</summary>
    static void AssertDescendsViaGrainCall(ReceivedSpan span, ReceivedSpan ancestor, IReadOnlyDictionary<string, ReceivedSpan> byId)
    {
        var path = Ancestors(span, byId);
        var at = path.FindIndex(s => s.SpanId == ancestor.SpanId);
        Assert.True(at >= 0, $"{span} does not descend from {ancestor}; its ancestors: {string.Join(" → ", path)}");
        Assert.Contains(path.Take(at), s => s.Scope == "Microsoft.Orleans.Application");
        Assert.Equal(ancestor.TraceId, span.TraceId);
    }

    /// <summary>The parent chain of a span (nearest first) as far as parents were received.</summary>
    static List<ReceivedSpan> Ancestors(ReceivedSpan span, IReadOnlyDictionary<string, ReceivedSpan> byId)
    {
        var path = new List<ReceivedSpan>();
        var current = span;
        while (!current.IsRoot && byId.TryGetValue(current.ParentId, out var parent))
        {
            path.Add(parent);
            current = parent;
        }
        return path;
    }
}
