using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RefAlign.Client;
using Wire = RefAlign.Client.Protos;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A remote trainer's workflow through the client against real silo processes: inputs pushed as artifacts through
/// one silo, a run started through another that names them, its checkpoint pulled back bit for bit; pushes
/// interrupted and resumed, corrupted chunks and bad names refused.
/// </summary>
[Collection(FailoverCollection.Name)]
[Trait("Tier", "Process")]
public sealed class ArtifactTests(FailoverClusterFixture fixture) : IAsyncLifetime
{
    ProcessCluster Cluster => fixture.Cluster;

    string Root => Cluster.Workspace.Root;

    public Task InitializeAsync() => fixture.HealAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    string NewFolder(string name) => Path.Combine(Root, $"{name}-{Guid.NewGuid():N}");

    static void AssertSameFiles(string expected, string actual)
    {
        var files = Directory.GetFiles(expected, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(expected, f)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(files, Directory.GetFiles(actual, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(actual, f)).Order(StringComparer.Ordinal));
        foreach (var f in files) Assert.True(File.ReadAllBytes(Path.Combine(expected, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(actual, f))), f);
    }

    [Fact]
    public async Task A_run_named_by_artifacts_pushed_through_another_silo_trains_and_its_checkpoint_comes_back_bit_for_bit()
    {
        var tag = Guid.NewGuid().ToString("N")[..6];
        using (var pusher = Cluster.Client("silo-c"))
        {
            var policy = await pusher.PushArtifactAsync(Path.Combine(Root, "policy"), $"models/policy-{tag}", "model");
            Assert.Equal("model", policy.Kind);
            await pusher.PushArtifactAsync(Path.Combine(Root, "encoder"), $"models/encoder-{tag}", "encoder");
            var data = await pusher.PushArtifactAsync(Path.Combine(Root, "data", "references.jsonl"), $"datasets/refs-{tag}", "data");
            Assert.Equal(["references.jsonl"], data.Files.Select(f => f.Path));
            // Round trips, bit for bit: the model folder and the data set.
            var back = NewFolder("pulled-policy");
            var pulled = await pusher.PullArtifactAsync(policy.Name, back);
            Assert.Equal(policy.Sha256, pulled.Sha256);
            AssertSameFiles(Path.Combine(Root, "policy"), back);
            var dataBack = NewFolder("pulled-data");
            await pusher.PullArtifactAsync(data.Name, dataBack);
            Assert.Equal(File.ReadAllBytes(Path.Combine(Root, "data", "references.jsonl")), File.ReadAllBytes(Path.Combine(dataBack, "references.jsonl")));
        }

        using var client = Cluster.Client("silo-d");
        var listed = await client.ListArtifactsAsync($"models/policy-{tag}");
        Assert.Equal([$"models/policy-{tag}"], listed.Artifacts.Select(a => a.Name));
        var config = TinyRuns.RefAlign($"artifacts-{tag}", steps: 3, checkpointEvery: 3)
            .Replace("\"model\": \"policy\"", $"\"model\": \"artifact:models/policy-{tag}\"", StringComparison.Ordinal)
            .Replace("\"path\": \"data/references.jsonl\"", $"\"path\": \"artifact:datasets/refs-{tag}\"", StringComparison.Ordinal)
            .Replace("\"reward_model\": \"encoder\"", $"\"reward_model\": \"artifact:models/encoder-{tag}\"", StringComparison.Ordinal);
        var runId = await client.StartRunAsync(config);
        using (var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4)))
            await foreach (var _ in client.WatchRunAsync(runId, 0, cts.Token)) { }
        var run = await client.GetRunAsync(runId);
        Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");
        Assert.Contains(listed.Artifacts[0].Path, run.ConfigJson); // the run read the stored copy

        var pulledCheckpoint = NewFolder("pulled-checkpoint");
        var p = await client.PullRunAsync(runId, "latest", pulledCheckpoint);
        Assert.Equal($"{runId}/step-000003", p.Name);
        AssertSameFiles(Path.Combine(run.LatestCheckpoint!, "policy"), pulledCheckpoint);
        Assert.True(File.Exists(Path.Combine(pulledCheckpoint, "model.safetensors")));

        // A name the store does not hold, or of the wrong kind, is refused naming the field, before anything starts.
        var e = await Assert.ThrowsAsync<RpcException>(() => client.StartRunAsync(config.Replace($"artifact:datasets/refs-{tag}", $"artifact:models/encoder-{tag}", StringComparison.Ordinal)));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("data.path", RpcErrors.Field(e));
    }

    /// <summary>Reports synchronously, so a test can act at an exact point of a transfer.</summary>
    sealed class At(Action<TransferProgress> report) : IProgress<TransferProgress>
    {
        public void Report(TransferProgress value) => report(value);
    }

    [Fact]
    public async Task A_push_cut_halfway_is_not_listed_and_a_second_push_resumes_from_the_silos_copy()
    {
        // A folder of several MiB of incompressible bytes, so the push spans many chunks.
        var source = NewFolder("big");
        Directory.CreateDirectory(source);
        for (var i = 0; i < 3; i++) File.WriteAllBytes(Path.Combine(source, $"part-{i}.bin"), RandomNumberGenerator.GetBytes(3 << 20));
        var name = $"reports/big-{Guid.NewGuid():N}"[..20];
        using var client = Cluster.Client("silo-c");
        using var cut = new CancellationTokenSource();
        long total = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.PushArtifactAsync(source, name, "report", new At(p =>
        {
            total = p.Total;
            if (p.Done >= p.Total / 2) cut.Cancel(); // the connection goes away mid-stream
        }), cut.Token));
        Assert.DoesNotContain(name, (await client.ListArtifactsAsync()).Artifacts.Select(a => a.Name));

        var firstOffset = -1L;
        var resumed = await client.PushArtifactAsync(source, name, "report", new At(p => { if (firstOffset < 0) firstOffset = p.Done; }));
        Assert.InRange(firstOffset, total / 2 - RefAlignClient.ArtifactChunkBytes, total - 1); // it did not start again from 0
        Assert.True(firstOffset > 0);
        var back = NewFolder("big-back");
        await client.PullArtifactAsync(name, back);
        AssertSameFiles(source, back);
        Assert.Equal(resumed.Sha256, (await client.ListArtifactsAsync(name)).Artifacts.Single().Sha256);
        await client.DeleteArtifactAsync(name);
        Assert.Empty((await client.ListArtifactsAsync(name)).Artifacts);
    }

    [Fact]
    public async Task A_corrupted_chunk_and_a_bad_name_are_refused_over_the_wire()
    {
        using var channel = GrpcChannel.ForAddress(Cluster["silo-d"].GrpcAddress);
        var stub = new Wire.Artifacts.ArtifactsClient(channel);
        var bytes = RandomNumberGenerator.GetBytes(8192);
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        var name = $"reports/corrupt-{Guid.NewGuid():N}"[..24];
        using (var call = stub.PushArtifact())
        {
            await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest { Header = new Wire.PushHeader { Name = name, Kind = "report", Size = bytes.Length, Sha256 = sha } });
            var good = bytes.AsSpan(0, 4096);
            await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest { Chunk = new Wire.Chunk { Offset = 0, Data = ByteString.CopyFrom(good), Sha256 = Convert.ToHexStringLower(SHA256.HashData(good)) } });
            var flipped = bytes.AsSpan(4096).ToArray();
            var claimed = Convert.ToHexStringLower(SHA256.HashData(flipped));
            flipped[7] ^= 1;
            await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest { Chunk = new Wire.Chunk { Offset = 4096, Data = ByteString.CopyFrom(flipped), Sha256 = claimed } });
            var e = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                try { await call.RequestStream.CompleteAsync(); } catch (InvalidOperationException) { }
                await call.ResponseAsync;
            });
            Assert.Equal(StatusCode.DataLoss, e.StatusCode);
            Assert.Contains("byte 4096", e.Status.Detail);
        }
        Assert.Equal(4096, (await stub.GetPushOffsetAsync(new Wire.PushOffsetRequest { Name = name, Sha256 = sha })).ReceivedBytes);
        Assert.DoesNotContain(name, (await stub.ListArtifactsAsync(new Wire.ListArtifactsRequest())).Artifacts.Select(a => a.Name));

        using var bad = stub.PushArtifact();
        await bad.RequestStream.WriteAsync(new Wire.PushArtifactRequest { Header = new Wire.PushHeader { Name = "../../etc/passwd", Kind = "data", Size = 4096, Sha256 = sha } });
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            try { await bad.RequestStream.CompleteAsync(); } catch (InvalidOperationException) { }
            await bad.ResponseAsync;
        });
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Equal("name", refused.Trailers.GetValue("field"));
        var missing = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var pull = stub.PullArtifact(new Wire.PullArtifactRequest { Name = "models/none" });
            await pull.ResponseStream.MoveNext();
        });
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
    }
}
