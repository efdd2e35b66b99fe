using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using RefAlign.Compute.Formats;
using RefAlign.Grains;
using RefAlign.Runtime;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The stream's cost split on loopback in one process, printed (run with a detailed console logger): raw TCP, the
/// bare receive, the digest (XXH3-128), and a replica's whole fetch (receive + digest as it lands). Asserts only that bytes match;
/// the numbers are for reading, the bench is the figure of record.
/// </summary>
public sealed class WeightStreamSpeedTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_replica_fetch_is_printed_against_raw_tcp_and_the_digest()
    {
        using var a = randn(20_000_000 / 1024, 1024);
        var snapshot = WeightSnapshot.Capture([("a", a)]);
        await using var servers = new WeightServers();
        var learner = await servers.StartAsync();
        var origin = learner.Publish("run-1", 5, snapshot)!;
        var fake = WeightRelayTests.FakeLearner.Create(snapshot, origin);
        var manifest = WeightRelayTests.FakeLearner.Manifest(fake);
        double Rate(long ticks) => snapshot.TotalBytes / Stopwatch.GetElapsedTime(ticks).TotalSeconds / 1e6;

        for (var round = 0; round < 3; round++)
        {
            var t = Stopwatch.GetTimestamp();
            var raw = await RawAsync(snapshot.Data);
            var rawRate = Rate(t);
            t = Stopwatch.GetTimestamp();
            var bare = await WeightExchange.FetchAsync(origin, snapshot.TotalBytes);
            var bareRate = Rate(t);
            t = Stopwatch.GetTimestamp();
            _ = snapshot.Digest();
            var digestRate = Rate(t);
            // A replica without a server of its own (no relay), fresh each round so nothing is cached.
            var replicas = new ReplicaWeights(new WeightExchange(), NullLogger<ReplicaWeights>.Instance);
            t = Stopwatch.GetTimestamp();
            using var fetched = await replicas.GetAsync(fake, $"run-{round}", manifest);
            var fetchRate = Rate(t);
            Assert.Equal(snapshot.Data, fetched.Snapshot.Data);
            Assert.Equal(snapshot.TotalBytes, raw);
            Assert.NotNull(bare);
            output.WriteLine($"{snapshot.TotalBytes / 1e6:F0} MB: raw TCP {rawRate:F0} MB/s, bare receive {bareRate:F0} MB/s, " +
                $"digest {digestRate:F0} MB/s, replica fetch {fetchRate:F0} MB/s ({fetchRate / rawRate:F2} of raw)");
        }
    }

    [Fact]
    public async Task A_chain_of_three_replica_silos_is_printed_against_one()
    {
        using var a = randn(20_000_000 / 1024, 1024);
        var snapshot = WeightSnapshot.Capture([("a", a)]);
        await using var servers = new WeightServers();
        var learner = await servers.StartAsync();
        for (var round = 0; round < 3; round++)
        {
            var seconds = new List<double>();
            foreach (var count in new[] { 1, 3 })
            {
                // A fresh version each time: every silo fetches, relayed learner → 1 → 2 → 3.
                var version = round * 10 + count;
                var fake = WeightRelayTests.FakeLearner.Create(snapshot, learner.Publish("run-1", version, snapshot)!);
                var manifest = WeightRelayTests.FakeLearner.Manifest(fake) with { Version = version };
                var silos = new List<ReplicaWeights>();
                for (var i = 0; i < count; i++) silos.Add(new ReplicaWeights(await servers.StartAsync(), NullLogger<ReplicaWeights>.Instance));
                var t = Stopwatch.GetTimestamp();
                var got = await Task.WhenAll(silos.Select(s => s.GetAsync(fake, "run-1", manifest)));
                seconds.Add(Stopwatch.GetElapsedTime(t).TotalSeconds);
                Assert.All(got, g => Assert.Equal(snapshot.Data, g.Snapshot.Data));
                Assert.Equal(1, learner.TimesServed("run-1", version));
            }
            output.WriteLine($"{snapshot.TotalBytes / 1e6:F0} MB to 1 silo {seconds[0]:F3} s, to 3 relayed {seconds[1]:F3} s: {seconds[1] / seconds[0]:F2}");
        }
    }

    static async Task<long> RawAsync(byte[] data)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var receive = Task.Run(async () =>
        {
            using var server = await listener.AcceptTcpClientAsync();
            await using var stream = server.GetStream();
            var buffer = new byte[1 << 20];
            long got = 0;
            int n;
            while ((n = await stream.ReadAsync(buffer)) > 0) got += n;
            return got;
        });
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            await using var s = client.GetStream();
            for (var at = 0; at < data.Length; at += 16 << 20) await s.WriteAsync(data.AsMemory(at, Math.Min(16 << 20, data.Length - at)));
        }
        return await receive;
    }
}
