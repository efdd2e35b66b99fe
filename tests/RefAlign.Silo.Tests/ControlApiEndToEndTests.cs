using Grpc.Core;
using RefAlign.Client;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The control API end to end on a real silo host with the real grains: a RefAlign run started, watched and inspected
/// through the gRPC client over loopback, its spans at the OTLP receiver, and the API's error mapping.
/// </summary>
public sealed class ControlApiEndToEndTests(SiloHostFixture silo) : IClassFixture<SiloHostFixture>, IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-api-e2e-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    RefAlignClient Client() => new(new RefAlignClientOptions { Address = new Uri($"http://127.0.0.1:{silo.GrpcPort}") });

    string Config(int steps, double learningRate = 0.01)
    {
        var policy = Path.Combine(_root, "policy");
        var encoder = Path.Combine(_root, "encoder");
        if (!Directory.Exists(policy))
        {
            ModelPresets.Initialize(policy, "tiny", "llama", seed: 1);
            EncoderPresets.Initialize(encoder, "tiny-roberta", seed: 2);
            DemoData.WriteTo(Path.Combine(_root, "data"));
        }
        return $$"""
            { "name": "api", "algorithm": "refalign", "seed": 4,
              "policy": { "model": "{{policy}}" },
              "data": { "path": "{{Path.Combine(_root, "data", DemoData.ReferencesFileName)}}", "max_prompt_length": 32 },
              "optimizer": { "kind": "adamw", "learning_rate": {{learningRate.ToString(System.Globalization.CultureInfo.InvariantCulture)}}, "warmup_steps": 0 },
              "refalign": { "reward_model": "{{encoder}}", "num_samples": 2, "max_new_tokens": 6 },
              "batch_size": 4, "micro_batch_size": 8, "max_steps": {{steps}}, "eval_every": 0, "checkpoint_every": 0,
              "output_dir": "{{Path.Combine(_root, "runs")}}", "distributed": { "shards": 2 } }
            """;
    }

    [Fact]
    public async Task A_run_started_over_grpc_trains_on_the_grains_and_is_watched_to_completion()
    {
        using var client = Client();
        var id = await client.StartRunAsync(Config(steps: 3));
        var events = new List<RunEvent>();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await foreach (var e in client.WatchRunAsync(id, 0, cts.Token)) events.Add(e);

        var run = await client.GetRunAsync(id);
        Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");
        Assert.Equal(3, run.Step);
        Assert.Equal(3, run.WeightVersion);
        Assert.NotNull(run.LatestCheckpoint);
        Assert.True(Directory.Exists(run.LatestCheckpoint));
        var steps = events.Where(e => e.Kind == RunEventKind.Step).ToList();
        Assert.Equal([1, 2, 3], steps.Select(e => e.Step));
        Assert.All(steps, e => Assert.InRange(e.Metrics["reward/mean"], 0.0, 2.0));
        Assert.Contains(events, e => e.Kind == RunEventKind.Phase && e.Phase == "generate");
        Assert.Equal(events.Select(e => e.Sequence), events.Select(e => e.Sequence).Order().Distinct());
        Assert.Contains(await client.ListRunsAsync(), r => r.RunId == id);

        var cluster = await client.GetClusterAsync();
        var only = Assert.Single(cluster.Silos);
        Assert.Contains("learner", only.Roles);
        Assert.Equal("cpu", only.Device);

        // The run's steps reached the OTLP receiver as spans tagged with its id.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!silo.Receiver.Spans.Any(s => s.Span.Name == "learn" && s.Attribute("refalign.run_id") == id) && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.Contains(silo.Receiver.Spans, s => s.Span.Name == "step" && s.Attribute("refalign.run_id") == id);
        Assert.Contains(silo.Receiver.Spans, s => s.Span.Name == "learner.step" && s.Attribute("refalign.run_id") == id);
    }

    [Fact]
    public async Task Bad_configs_and_unknown_runs_map_to_grpc_status_codes()
    {
        using var client = Client();
        var bad = await Assert.ThrowsAsync<RpcException>(() => client.StartRunAsync(Config(steps: 1, learningRate: -1)));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Equal("optimizer.learning_rate", bad.Field());
        var missing = await Assert.ThrowsAsync<RpcException>(() => client.StartRunAsync(Config(steps: 1).Replace("\"tiny\"", "x").Replace(Path.Combine(_root, "policy"), "/nonexistent/model")));
        Assert.Equal(StatusCode.InvalidArgument, missing.StatusCode);
        Assert.Equal("policy.model", missing.Field());
        var unknown = await Assert.ThrowsAsync<RpcException>(() => client.GetRunAsync("no-such-run"));
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
    }
}
