using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using RefAlign.Compute.Telemetry;

namespace RefAlign.Silo.Tests;

[Trait("Tier", "Process")]
public sealed class SiloHostTests(SiloHostFixture silo) : IClassFixture<SiloHostFixture>
{
    [Fact]
    public async Task Healthz_reports_an_active_silo_and_the_compute_executor()
    {
        using var http = new HttpClient();
        using var response = await http.GetAsync($"http://127.0.0.1:{silo.HttpPort}/healthz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("Healthy", body.RootElement.GetProperty("status").GetString());
        var checks = body.RootElement.GetProperty("checks");
        Assert.Equal("Active", checks.GetProperty("silo").GetProperty("data").GetProperty("status").GetString());
        Assert.Equal(2, checks.GetProperty("compute").GetProperty("data").GetProperty("threads").GetInt32());
        // The device in use and what the loaded libtorch can drive (this machine: the CPU build).
        Assert.Equal("cpu", checks.GetProperty("compute").GetProperty("data").GetProperty("device").GetString());
        Assert.Equal("cpu", checks.GetProperty("compute").GetProperty("data").GetProperty("libtorch").GetString());
        // Device memory is a GPU's: a CPU silo reports none, and no CUDA runtime is mapped into a CPU build's process.
        Assert.False(checks.GetProperty("compute").GetProperty("data").TryGetProperty("memory_total_bytes", out _));
        Assert.Null(RefAlign.Runtime.DeviceMemory.Of("cpu"));
        Assert.Null(RefAlign.Runtime.DeviceMemory.Of("cuda:0"));
    }

    [Fact]
    public async Task Healthz_and_grpc_health_answer_on_the_http2_grpc_port()
    {
        // Cleartext HTTP/2 (prior knowledge), as gRPC clients speak it.
        using var http = new HttpClient { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await http.GetAsync($"http://127.0.0.1:{silo.GrpcPort}/healthz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version20, response.Version);

        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{silo.GrpcPort}");
        var reply = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, reply.Status);
    }

    [Fact]
    public async Task Spans_reach_a_real_otlp_receiver_as_one_tree_with_run_attributes()
    {
        var runId = $"run-{Guid.NewGuid():N}";
        var grains = silo.App.Services.GetRequiredService<IGrainFactory>();
        string rootTraceId, rootSpanId;
        ProbeResult result;
        using (var parent = TrainingTelemetry.Source.StartActivity("test.start_run", ActivityKind.Client))
        {
            Assert.NotNull(parent); // the silo's tracer provider listens to RefAlign.Training
            rootTraceId = parent.TraceId.ToHexString();
            rootSpanId = parent.SpanId.ToHexString();
            result = await grains.GetGrain<ITracingProbeGrain>(runId).RunStepAsync(runId, 7, 3);
        }

        Assert.True(result.RanOnComputeThread);
        silo.App.Services.GetRequiredService<TracerProvider>().ForceFlush(5000);

        var spans = await silo.Receiver.WaitForAsync(
            s => s.Any(x => x.Span.Name == TrainingTelemetry.Phases.Learn && x.Attribute(TrainingTelemetry.Tags.RunId) == runId)
                && s.Any(x => x.SpanId == rootSpanId),
            TimeSpan.FromSeconds(15));
        var trace = spans.Where(s => s.TraceId == rootTraceId).ToArray();
        var byId = trace.ToDictionary(s => s.SpanId);
        var root = Assert.Single(trace, s => s.SpanId == rootSpanId);
        var step = Assert.Single(trace, s => s.Span.Name == TrainingTelemetry.Phases.Step);
        var learn = Assert.Single(trace, s => s.Span.Name == TrainingTelemetry.Phases.Learn);

        Assert.All(trace, s => Assert.Equal(SiloHostFixture.ServiceName, s.ServiceName));
        Assert.Equal("", root.ParentId.Trim('0'));
        foreach (var span in new[] { step, learn })
        {
            Assert.Equal(runId, span.Attribute(TrainingTelemetry.Tags.RunId));
            Assert.Equal("7", span.Attribute(TrainingTelemetry.Tags.Step));
            Assert.Equal("3", span.Attribute(TrainingTelemetry.Tags.WeightVersion));
        }

        Assert.Equal("learn", learn.Attribute(TrainingTelemetry.Tags.Phase));
        Assert.Equal("0", learn.Attribute(TrainingTelemetry.Tags.Shard));

        // learn → (Orleans call spans) → step → (Orleans call spans) → root, each hop crossing a grain call.
        var learnPath = Ancestors(learn, byId);
        Assert.Contains(step.SpanId, learnPath.Select(s => s.SpanId));
        Assert.Equal(rootSpanId, learnPath[^1].SpanId);
        var betweenStepAndLearn = learnPath.TakeWhile(s => s.SpanId != step.SpanId).ToArray();
        Assert.Contains(betweenStepAndLearn, s => s.Scope == "Microsoft.Orleans.Application");
        var stepPath = Ancestors(step, byId);
        Assert.Equal(rootSpanId, stepPath[^1].SpanId);
        Assert.Contains(stepPath, s => s.Scope == "Microsoft.Orleans.Application");
    }

    /// <summary>Parent chain of a span up to the root, asserting every parent arrived.</summary>
    private static List<ReceivedSpan> Ancestors(ReceivedSpan span, IReadOnlyDictionary<string, ReceivedSpan> byId)
    {
        var path = new List<ReceivedSpan>();
        var current = span;
        while (current.ParentId.Trim('0').Length > 0)
        {
            Assert.True(byId.TryGetValue(current.ParentId, out var parent),
                $"parent {current.ParentId} of span '{current.Span.Name}' ({current.Scope}) was not received");
            path.Add(parent);
            current = parent;
        }

        return path;
    }
}
