extern alias clientlib;

using System.Formats.Tar;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using RefAlign.Client;
using Xunit.Abstractions;
using Wire = clientlib::RefAlign.Client.Protos;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The outside probe of issue 32, replayed as real requests against a real silo process: each attempt is answered by a
/// clear refusal, the silo survives every one, and its memory stays far below what the configs claim. Hand-made messages
/// go through the generated gRPC client where the CLI cannot send them.
/// </summary>
[Trait("Tier", "Process")]
public sealed class SecuritySuiteTests(SecuritySuiteFixture suite, ITestOutputHelper output) : IClassFixture<SecuritySuiteFixture>
{
    async Task AssertHealthyAsync()
    {
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{suite.Silo.HttpPort}/healthz")).StatusCode);
        Assert.True(suite.Silo.IsRunning, suite.Silo.Log());
    }

    Task<RpcException> Refused(string attempt, Func<Task> call, params StatusCode[] codes) => Attempts.RefusedAsync(output, attempt, call, codes);

    static string Edit(string json, Action<JsonObject> change)
    {
        var config = JsonNode.Parse(json)!.AsObject();
        change(config);
        return config.ToJsonString();
    }

    static string Sha(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    [Fact]
    public async Task Model_pushes_claiming_huge_or_broken_sizes_are_refused_and_the_silo_stays_small()
    {
        using var client = suite.Client();
        // The probe's folder: some 640 KiB on disk, a config claiming 40 layers of hidden 4096 (about 8e9 parameters).
        var probe = suite.PolicyCopy("probe-model", c =>
        {
            foreach (var (field, value) in new[] { ("num_hidden_layers", 40), ("hidden_size", 4096), ("intermediate_size", 16384),
                         ("num_attention_heads", 32), ("num_key_value_heads", 8), ("head_dim", 128) })
                c[field] = value;
        });
        var huge = await Refused("push: model config claiming 40 × 4096 × 16384", () => client.PushArtifactAsync(probe, "probe/huge", "model"), StatusCode.ResourceExhausted);
        Assert.Contains("num_hidden_layers 40", huge.Status.Detail);
        Assert.Contains("Limits:MaxModelMemoryBytes", huge.Status.Detail);
        foreach (var (field, value) in new[] { ("hidden_size", 0), ("num_hidden_layers", -1), ("vocab_size", int.MinValue) })
        {
            var folder = suite.PolicyCopy($"probe-{field}-{value}", c => c[field] = value);
            var bad = await Refused($"push: model config {field} = {value}", () => client.PushArtifactAsync(folder, $"probe/{field}", "model"), StatusCode.InvalidArgument);
            Assert.Contains($"'{field}'", bad.Status.Detail);
        }
        // Random configs and headers, pushed for real: each refused by name, none allocated.
        var r = new Random(3232);
        var codes = new Dictionary<StatusCode, int>();
        for (var i = 0; i < 60; i++)
        {
            var (kind, folder, _) = FuzzFolders.Case(r, Path.Combine(suite.Workspace.Root, "fuzz", $"case-{i}"));
            var e = await Assert.ThrowsAsync<RpcException>(() => client.PushArtifactAsync(folder, $"fuzz/case-{i}", kind));
            Assert.True(e.StatusCode is StatusCode.InvalidArgument or StatusCode.ResourceExhausted, $"case {i}: {e.StatusCode} {e.Status.Detail}");
            Assert.Matches(FuzzFolders.Named(), e.Status.Detail);
            codes[e.StatusCode] = codes.GetValueOrDefault(e.StatusCode) + 1;
        }
        var (peak, now) = suite.Memory();
        output.WriteLine($"fuzz pushes: {string.Join(", ", codes.Select(c => $"{c.Key} {c.Value}"))}; silo memory peak {peak >> 20} MiB, now {now >> 20} MiB (limit for models {SecuritySuiteFixture.ModelMemory >> 20} MiB)");
        Assert.True(peak < 2L << 30, $"the silo's resident memory peaked at {peak >> 20} MiB");
        Assert.Empty((await client.ListArtifactsAsync("fuzz/")).Pending);
        await AssertHealthyAsync();
    }

    [Fact]
    public async Task Reads_stay_inside_the_roots_through_links_at_any_depth_and_after_admission()
    {
        using var client = suite.Client();
        // Depth 1, depth 2 and a linked folder in a model folder: refused at admission, naming the entry.
        var depth1 = suite.PolicyCopy("links-depth1");
        suite.LinkOut(Path.Combine(depth1, "tokenizer.model"));
        var depth2 = suite.PolicyCopy("links-depth2");
        File.WriteAllText(Path.Combine(suite.Outside, "notes.txt"), "outside");
        Directory.CreateDirectory(Path.Combine(depth2, "extra", "deeper"));
        File.CreateSymbolicLink(Path.Combine(depth2, "extra", "deeper", "notes.txt"), Path.Combine(suite.Outside, "notes.txt"));
        var linkedDir = suite.PolicyCopy("links-dir");
        Directory.CreateSymbolicLink(Path.Combine(linkedDir, "assets"), suite.Outside);
        // The index names a shard through a sub-folder link: the probe's sub/w.safetensors.
        var indexed = suite.PolicyCopy("links-index");
        suite.LinkOut(Path.Combine(indexed, "model.safetensors"), Path.Combine(indexed, "sub", "w.safetensors"));
        var shapes = RefAlign.Compute.Formats.SafeTensors.ReadHeader(Path.Combine(indexed, "sub", "w.safetensors"), out _);
        var map = new JsonObject();
        foreach (var name in shapes.Keys) map[name] = "sub/w.safetensors";
        File.WriteAllText(Path.Combine(indexed, "model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        foreach (var (folder, entry) in new[] { ("links-depth1", "tokenizer.model"), ("links-depth2", "extra/deeper/notes.txt"), ("links-dir", "assets"), ("links-index", "sub/w.safetensors") })
        {
            var e = await Refused($"run start: policy.model '{folder}' holding a link out ({entry})",
                () => client.StartRunAsync(Edit(TinyRuns.RefAlign($"{folder}", 1), c => c["policy"]!["model"] = folder)), StatusCode.InvalidArgument);
            Assert.Equal("policy.model", e.Field());
            Assert.Contains($"'{entry}' in '{folder}' leads outside", e.Status.Detail);
        }

        // A link swapped in after admission: the file is refused where it is opened, by the run's evaluation.
        var swap = suite.PolicyCopy("links-swap");
        var id = await client.StartRunAsync(Edit(TinyRuns.RefAlign("swap", 1, checkpointEvery: 1), c => c["policy"]!["model"] = "links-swap"));
        await foreach (var _ in client.WatchRunAsync(id)) { }
        Assert.Equal(RunStatus.Completed, (await client.GetRunAsync(id)).Status);
        suite.LinkOut(Path.Combine(swap, "model.safetensors"));
        var eval = await Refused("run eval of 'base' after its model.safetensors became a link out",
            async () => { await foreach (var _ in client.EvaluateRunAsync(new RunEvalRequest(id, ["base"], Examples: 2, NumSamples: 1))) { } },
            StatusCode.FailedPrecondition, StatusCode.InvalidArgument);
        Assert.Contains("outside the silo's read roots", eval.Status.Detail);
        await AssertHealthyAsync();
    }

    /// <summary>A push of <paramref name="stream"/> (all of it, or <paramref name="upTo"/> bytes) through the generated client.</summary>
    async Task<Wire.Artifact> RawPushAsync(string name, string kind, long size, string sha, byte[] stream, int upTo = int.MaxValue)
    {
        var (channel, artifacts, headers) = suite.Raw();
        using var _ = channel;
        using var call = artifacts.PushArtifact(headers);
        var send = Math.Min(upTo, stream.Length);
        try
        {
            await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest { Header = new Wire.PushHeader { Name = name, Kind = kind, Size = size, Sha256 = sha } });
            if (send > 0)
                await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest
                {
                    Chunk = new Wire.Chunk { Offset = 0, Data = ByteString.CopyFrom(stream, 0, send), Sha256 = Sha(stream.AsSpan(0, send)) },
                });
            await call.RequestStream.CompleteAsync();
        }
        // The silo may end the call before it has read everything (a refused header): its status says why.
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException) { }
        return await call.ResponseAsync;
    }

    [Fact]
    public async Task Uploads_reserve_what_arrived_and_pending_pushes_are_listed_removable_and_expire()
    {
        using var client = suite.Client();
        // Eight headers announcing 32 MiB each (the whole 256 MiB store), and nothing after them.
        for (var i = 0; i < 8; i++)
            await Refused($"push: header only, announcing 32 MiB (#{i})", () => RawPushAsync($"junk/{i}", "model", 32 << 20, Sha([(byte)i]), []), StatusCode.FailedPrecondition);
        var listing = await client.ListArtifactsAsync("junk/");
        Assert.Equal(8, listing.Pending.Count);
        Assert.All(listing.Pending, p => Assert.Equal(0, p.ReceivedBytes));
        // A real push still fits.
        var stored = await client.PushArtifactAsync(suite.Workspace.Preferences, "datasets/suite-pairs", "data");
        Assert.Equal("datasets/suite-pairs", stored.Name);
        // A pending name is removed by artifact rm.
        Assert.Equal("junk/0", (await client.DeleteArtifactAsync("junk/0")).Name);
        Assert.Equal(7, (await client.ListArtifactsAsync("junk/")).Pending.Count);

        // Failed pushes free what they held: a tar with a file 'a' and then 'a/b'; a name ending in a newline.
        using var bytes = new MemoryStream();
        using (var tar = new TarWriter(bytes, TarEntryFormat.Ustar, leaveOpen: true))
            foreach (var path in new[] { "a", "a/b" })
                tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream("x"u8.ToArray()) });
        var ab = bytes.ToArray();
        var e = await Refused("push: tar with file 'a' then 'a/b'", () => RawPushAsync("reports/ab", "report", ab.Length, Sha(ab), ab), StatusCode.InvalidArgument);
        Assert.Contains("not a tar stream of plain files", e.Status.Detail);
        Assert.DoesNotContain((await client.ListArtifactsAsync("reports/")).Pending, p => p.Name == "reports/ab");
        var newline = await Refused("push: name 'models/x\\n'", () => RawPushAsync("models/x\n", "model", ab.Length, Sha(ab), ab), StatusCode.InvalidArgument);
        Assert.Equal("name", newline.Field());

        // Over the per-artifact limit: refused at the header.
        var big = new byte[3 << 20];
        await Refused("push: 300 MiB announced (Limits:MaxArtifactBytes is 64 MiB)", () => RawPushAsync("junk/big", "data", 300L << 20, Sha(big), big), StatusCode.ResourceExhausted);

        // Unfinished pushes go after Limits:PendingPushExpirySeconds without a byte.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(SecuritySuiteFixture.PendingExpirySeconds * 6);
        while ((await client.ListArtifactsAsync("junk/")).Pending.Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "pending pushes did not expire");
            await Task.Delay(500);
        }
        await AssertHealthyAsync();
    }

    [Fact]
    public async Task Silent_connections_and_a_reconnect_flood_on_the_weight_port_do_not_stop_a_run()
    {
        using var client = suite.Client();
        int closed;
        await using (var flood = WeightPortFlood.Start(new IPEndPoint(IPAddress.Loopback, suite.Silo.WeightPort)))
        {
            var id = await client.StartRunAsync(TinyRuns.RefAlign("weight-flood", 3, checkpointEvery: 0));
            await foreach (var _ in client.WatchRunAsync(id, 0, new CancellationTokenSource(TimeSpan.FromMinutes(5)).Token)) { }
            var run = await client.GetRunAsync(id);
            Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");
            closed = flood.Closed;
            Assert.True(closed > 0, "the flood never reached the weight port");
        }
        output.WriteLine($"weight port: {closed} hostile connections closed by the silo while the run completed");
        await AssertHealthyAsync();
    }

    [Fact]
    public async Task Every_http_response_carries_the_headers_and_metrics_need_a_key_beyond_loopback()
    {
        using var http = new HttpClient();
        var outside = SecuritySuiteFixture.ExternalAddress();
        foreach (var url in new[] { "/", "/healthz", "/dashboard/dashboard.js", "/api/runs", "/metrics" })
        {
            using var response = await http.GetAsync($"http://127.0.0.1:{suite.Silo.HttpPort}{url}");
            Assert.Contains("default-src 'self'", string.Join(",", response.Headers.GetValues("Content-Security-Policy")));
            Assert.Contains("frame-ancestors 'none'", string.Join(",", response.Headers.GetValues("Content-Security-Policy")));
            Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
            Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
            Assert.Equal("no-referrer", response.Headers.GetValues("Referrer-Policy").Single());
        }
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{suite.Silo.HttpPort}/metrics")).StatusCode);
        using var anonymous = await http.GetAsync($"http://{outside}:{suite.Silo.HttpPort}/metrics");
        output.WriteLine($"| GET /metrics from {outside}, no key | {(int)anonymous.StatusCode} | {(await anonymous.Content.ReadAsStringAsync()).Trim()} |");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Contains("Bearer", anonymous.Headers.WwwAuthenticate.ToString());
        // As Prometheus sends it from an authorization block (type Bearer, a viewer's key as credentials).
        using var keyed = new HttpRequestMessage(HttpMethod.Get, $"http://{outside}:{suite.Silo.HttpPort}/metrics");
        keyed.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", SecuritySuiteFixture.Viewer);
        using var withKey = await http.SendAsync(keyed);
        Assert.Equal(HttpStatusCode.OK, withKey.StatusCode);
        Assert.Contains("# TYPE", await withKey.Content.ReadAsStringAsync());
        // Its own listener, on an address the operator keeps for Prometheus: no key, and nothing but /metrics.
        using var own = await http.GetAsync($"http://{outside}:{suite.MetricsPort}/metrics");
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"http://{outside}:{suite.MetricsPort}/api/runs")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"http://{outside}:{suite.MetricsPort}/")).StatusCode);
    }

    [Fact]
    public async Task Admission_refuses_every_field_it_can_check_and_a_run_that_diverges_fails()
    {
        using var client = suite.Client();
        async Task Field(string attempt, string json, string field)
        {
            var e = await Refused(attempt, () => client.StartRunAsync(json), StatusCode.InvalidArgument);
            Assert.Equal(field, e.Field());
        }
        await Field("run start: output_dir of 100,000 characters", Edit(TinyRuns.RefAlign("a", 1), c => c["output_dir"] = new string('o', 100_000)), "output_dir");
        await Field("run start: output_dir inside the artifact store", Edit(TinyRuns.RefAlign("a", 1), c => c["output_dir"] = "artifacts/objects"), "output_dir");
        await Field("run start: preference.lambda = 1e308", Edit(TinyRuns.SrDpo("a", 1), c => c["preference"]!["lambda"] = 1e308), "preference.lambda");
        await Field("run start: optimizer.learning_rate = 1e300", Edit(TinyRuns.RefAlign("a", 1), c => c["optimizer"]!["learning_rate"] = 1e300), "optimizer.learning_rate");
        await Field("run start: refalign.max_new_tokens beyond the context (2000 > 1024)", Edit(TinyRuns.RefAlign("a", 1), c => c["refalign"]!["max_new_tokens"] = 2000), "refalign.max_new_tokens");
        await Field("run start: 10,000 lora.target_modules", Edit(TinyRuns.SrDpo("a", 1),
            c => c["policy"]!["lora"] = new JsonObject { ["target_modules"] = new JsonArray([.. Enumerable.Range(0, 10_000).Select(_ => (JsonNode?)"q_proj")]) }), "policy.lora.target_modules");

        // Another run's folder: a run that completed writes under output_dir/<run id>; a new one may not write inside it.
        var first = await client.StartRunAsync(TinyRuns.RefAlign("first", 1, checkpointEvery: 0));
        await foreach (var _ in client.WatchRunAsync(first)) { }
        var taken = RunConfigOutput((await client.GetRunAsync(first)).ConfigJson);
        await Field("run start: output_dir inside another run's folder", Edit(TinyRuns.RefAlign("a", 1), c => c["output_dir"] = Path.Combine(taken, "mine")), "output_dir");

        // A factor float32 holds but the weights do not: the run fails naming the step and the term, never completes.
        var id = await client.StartRunAsync(TinyRuns.RefAlign("diverging", 3, learningRate: 1e30, checkpointEvery: 0));
        await foreach (var _ in client.WatchRunAsync(id)) { }
        var run = await client.GetRunAsync(id);
        output.WriteLine($"| run with optimizer.learning_rate = 1e30 | {run.Status} | {run.Error} |");
        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Matches(@"step \d+: the term '[a-z_/]+'", run.Error);
        await AssertHealthyAsync();
    }

    static string RunConfigOutput(string configJson) => JsonNode.Parse(configJson)!["output_dir"]!.GetValue<string>();
}
