using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using RefAlign.Client;

namespace RefAlign.Silo.Tests;

/// <summary>A real silo process with tight limits, its data roots in a workspace, and an API key.</summary>
public sealed class GuardedSiloFixture : IAsyncLifetime
{
    public const string Key = "operator-key-0123456789";

    public DemoWorkspace Workspace { get; } = new("refalign-guarded-");

    public SiloProcess Silo { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Silo = await SiloProcess.StartAsync("guarded", Workspace.Root, [$"--Silo:ApiKey={Key}", "--Limits:MaxConcurrentRuns=1"]);

    public async Task DisposeAsync()
    {
        await Silo.DisposeAsync();
        Workspace.Dispose();
    }
}

/// <summary>Nothing a remote caller sends makes the silo allocate without bound or touch files outside its roots.</summary>
[Trait("Tier", "Process")]
public sealed class AdmissionTests(GuardedSiloFixture fixture) : IClassFixture<GuardedSiloFixture>
{
    RefAlignClient Client() => new(new RefAlignClientOptions { Address = new Uri(fixture.Silo.GrpcAddress), ApiKey = GuardedSiloFixture.Key });

    static string Edit(Action<JsonObject> change)
    {
        var config = JsonNode.Parse(TinyRuns.RefAlign("guarded", 3))!.AsObject();
        change(config);
        return config.ToJsonString();
    }

    async Task AssertHealthyAsync(RefAlignClient client)
    {
        using var http = new HttpClient();
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{fixture.Silo.HttpPort}/healthz")).StatusCode);
        Assert.Single((await client.GetClusterAsync()).Silos);
        Assert.True(fixture.Silo.IsRunning);
    }

    async Task<RpcException> RefusedAsync(RefAlignClient client, string config, StatusCode code)
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => client.StartRunAsync(config));
        Assert.True(e.StatusCode == code, $"{e.StatusCode}: {e.Status.Detail}");
        await AssertHealthyAsync(client);
        return e;
    }

    [Theory]
    [InlineData("batch_size", 1_000_000_000, "Limits:MaxBatchSize")]
    [InlineData("micro_batch_size", 100_000, "Limits:MaxBatchSize")]
    [InlineData("refalign.num_samples", 100_000, "Limits:MaxSamplesPerPrompt")]
    [InlineData("refalign.max_new_tokens", 10_000_000, "Limits:MaxNewTokens")]
    [InlineData("data.max_length", 100_000_000, "Limits:MaxSequenceLength")]
    [InlineData("distributed.shards", 100_000, "Limits:MaxShards")]
    [InlineData("max_steps", 2_000_000_000, "Limits:MaxTotalSteps")]
    [InlineData("epochs", 1_000_000, "Limits:MaxEpochs")]
    public async Task A_field_over_its_limit_is_invalid_argument_naming_field_and_limit(string field, long value, string limit)
    {
        using var client = Client();
        var config = Edit(c =>
        {
            var parts = field.Split('.');
            var node = parts.Length == 1 ? c : c[parts[0]]!.AsObject();
            node[parts[^1]] = value;
        });
        var e = await RefusedAsync(client, config, StatusCode.InvalidArgument);
        Assert.Equal(field, e.Field());
        Assert.Contains(limit, e.Status.Detail);
    }

    [Fact]
    public async Task A_huge_config_or_a_run_too_big_for_any_learner_is_refused_before_it_is_placed()
    {
        using var client = Client();
        string Padded(int bytes) => TinyRuns.RefAlign("guarded", 3).Replace("\"name\"", $"\"padding\": \"{new string('x', bytes)}\", \"name\"", StringComparison.Ordinal);
        var e = await RefusedAsync(client, Padded(3 << 19), StatusCode.InvalidArgument);
        Assert.Equal("config_json", e.Field());
        Assert.Contains("Limits:MaxConfigBytes", e.Status.Detail);
        // Far larger still: gRPC refuses the message before it is even read whole.
        await RefusedAsync(client, Padded(8 << 20), StatusCode.ResourceExhausted);

        // Each field under its limit and within the policy's context, together far beyond this machine's memory: refused
        // from the learner's estimate, nothing allocated.
        var big = Edit(c =>
        {
            c["micro_batch_size"] = 4096;
            c["batch_size"] = 4096;
            c["data"]!["max_length"] = 1024;
            c["data"]!["max_prompt_length"] = 512;
        });
        var r = await RefusedAsync(client, big, StatusCode.ResourceExhausted);
        Assert.Contains("the run's learner", r.Status.Detail);
        Assert.Contains("micro_batch_size 4096", r.Status.Detail);
    }

    [Fact]
    public async Task Paths_stay_inside_the_roots_and_only_regular_files_are_read()
    {
        using var client = Client();
        var root = fixture.Workspace.Root;
        Directory.CreateDirectory(Path.Combine(root, "traps"));
        var fifo = Path.Combine(root, "traps", "fifo.jsonl");
        if (!File.Exists(fifo)) Process.Start("mkfifo", [fifo])!.WaitForExit();
        var link = Path.Combine(root, "traps", "hostname.jsonl");
        if (!File.Exists(link)) File.CreateSymbolicLink(link, "/etc/hostname");
        var evilModel = Path.Combine(root, "traps", "model");
        if (!Directory.Exists(evilModel))
        {
            Directory.CreateDirectory(evilModel);
            foreach (var f in Directory.GetFiles(fixture.Workspace.PolicyDir)) File.Copy(f, Path.Combine(evilModel, Path.GetFileName(f)));
            File.Delete(Path.Combine(evilModel, "tokenizer.json"));
            File.CreateSymbolicLink(Path.Combine(evilModel, "tokenizer.json"), "/etc/passwd");
        }

        async Task<string> Refused(string field, Action<JsonObject> change)
        {
            var e = await RefusedAsync(client, Edit(change), StatusCode.InvalidArgument);
            Assert.Equal(field, e.Field());
            return e.Status.Detail;
        }
        Assert.Contains("outside the silo's output root", await Refused("output_dir", c => c["output_dir"] = Path.Combine(Path.GetTempPath(), "elsewhere")));
        Assert.Contains("outside the silo's data roots", await Refused("data.path", c => c["data"]!["path"] = "/dev/zero"));
        // Outside the roots, an existing file and a missing one get the same answer.
        var existing = await Refused("data.path", c => c["data"]!["path"] = "/etc/hostname");
        var missing = await Refused("data.path", c => c["data"]!["path"] = "/etc/no-such-file");
        Assert.Equal(existing.Replace("hostname", "X", StringComparison.Ordinal), missing.Replace("no-such-file", "X", StringComparison.Ordinal));
        Assert.Contains("outside the silo's data roots", await Refused("data.path", c => c["data"]!["path"] = "traps/hostname.jsonl"));
        Assert.Contains("outside the silo's data roots", await Refused("data.path", c => c["data"]!["path"] = "../../etc/hostname"));
        Assert.Contains("is not a regular file", await Refused("data.path", c => c["data"]!["path"] = "traps/fifo.jsonl"));
        Assert.Contains("'tokenizer.json' in 'traps/model' leads outside", await Refused("policy.model", c => c["policy"]!["model"] = "traps/model"));
        Assert.Contains("outside the silo's data roots", await Refused("refalign.reward_model", c => c["refalign"]!["reward_model"] = "/usr/share"));
    }

    [Fact]
    public async Task Too_many_runs_at_once_is_resource_exhausted()
    {
        using var client = Client();
        await UntilNoneRunsAsync(client);
        var first = await client.StartRunAsync(TinyRuns.RefAlign("long", 2000));
        try
        {
            var e = await RefusedAsync(client, TinyRuns.RefAlign("second", 3), StatusCode.ResourceExhausted);
            Assert.Contains("Limits:MaxConcurrentRuns", e.Status.Detail);
        }
        finally
        {
            await client.StopRunAsync(first);
        }
    }

    [Fact]
    public async Task Starts_sent_at_once_admit_no_more_runs_than_the_limit()
    {
        using var client = Client();
        await UntilNoneRunsAsync(client);
        // Each start checks the running runs, then starts its own: checked side by side, all would pass together.
        var starts = Enumerable.Range(0, 6).Select(async i =>
        {
            try { return (Id: await client.StartRunAsync(TinyRuns.RefAlign($"rush{i}", 2000)), Refusal: (RpcException?)null); }
            catch (RpcException e) { return (Id: (string?)null, Refusal: e); }
        }).ToList();
        var outcomes = await Task.WhenAll(starts);
        var admitted = outcomes.Where(o => o.Id is not null).Select(o => o.Id!).ToList();
        try
        {
            Assert.Single(admitted);
            Assert.All(outcomes.Where(o => o.Id is null), o =>
            {
                Assert.Equal(StatusCode.ResourceExhausted, o.Refusal!.StatusCode);
                Assert.Contains("Limits:MaxConcurrentRuns", o.Refusal.Status.Detail);
            });
            Assert.Single(await client.ListRunsAsync(), r => r.Status is RunStatus.Running or RunStatus.Stopping);
            await AssertHealthyAsync(client);
        }
        finally
        {
            foreach (var id in admitted) await client.StopRunAsync(id);
        }
    }

    /// <summary>Waits out a run another test stopped: it counts against the limit until its step ends.</summary>
    static async Task UntilNoneRunsAsync(RefAlignClient client)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while ((await client.ListRunsAsync()).Any(r => r.Status is RunStatus.Running or RunStatus.Stopping))
        {
            Assert.True(DateTime.UtcNow < deadline, "a run of another test is still running after 1 min");
            await Task.Delay(100);
        }
    }
}
