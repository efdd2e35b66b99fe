using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using RefAlign.Client;

namespace RefAlign.Cli.Commands.Bench;

internal static partial class ClusterBench
{
    /// <summary>
    /// Weights between silo processes: learner on A, generator on B. Every sync is a run of two steps (the second pulls
    /// the first's weights), and each is judged against what the host did seconds around it, not minutes later (other
    /// tenants' load moves raw TCP by half here): five syncs to B, each between two raw loopback TCP streams of the same
    /// bytes; then C and D join, and seven rounds of a sync to one silo, a six-shard sync to three (relayed A → B → C → D)
    /// and bare TCP over one hop and relayed over three. Each silo's first sync is a warm-up.
    /// </summary>
    static async Task<(Transfer, Broadcast)> TransferAsync(string dir, CancellationToken ct)
    {
        List<(double Bytes, double Seconds)> paired = [], warmUps = [];
        List<double> raws = [];
        List<(double One, double Three, double FloorOne, double FloorThree)> rounds = [];
        var broadcastSilos = 3;
        await using (var a = await LocalSilo.StartAsync(dir, ct, "silo-a", "--Silo:Roles=learner,scorer,reference"))
        {
            string[] join = ["--Silo:Roles=generator", $"--Cluster:PrimarySiloEndpoint=127.0.0.1:{a.SiloPort}"];
            await using var b = await LocalSilo.StartAsync(dir, ct, "silo-b", join);
            using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(a.GrpcAddress) });
            await SyncTimes(client, shards: 1, steps: 2, [], warmUps, ct);
            var bytes = warmUps.Count == 0 ? 80e6 : warmUps[0].Bytes;
            raws.Add(await RawTcpBytesPerSecond((long)bytes, ct));
            for (var i = 0; i < 5; i++)
            {
                await SyncTimes(client, shards: 1, steps: 2, paired, null, ct);
                raws.Add(await RawTcpBytesPerSecond((long)bytes, ct));
            }
            await using var c = await LocalSilo.StartAsync(dir, ct, "silo-c", join);
            await using var d = await LocalSilo.StartAsync(dir, ct, "silo-d", join);
            await BenchSupport.WaitForGeneratorsAsync(client, 3, ct);
            var relay = new HostFloors.RelayChain((int)bytes);
            await SyncTimes(client, shards: 6, steps: 2, [], null, ct);
            await relay.PairAsync(ct);
            for (var i = 0; i < 7; i++)
            {
                List<(double Bytes, double Seconds)> one = [], three = [];
                await SyncTimes(client, shards: 1, steps: 2, one, null, ct);
                // Shards go round robin over the generator silos: six cover all three.
                broadcastSilos = Math.Min(broadcastSilos, await SyncTimes(client, shards: 6, steps: 2, three, null, ct));
                var (floorOne, floorThree) = await relay.PairAsync(ct);
                if (one.Count > 0 && three.Count > 0) rounds.Add((one[0].Seconds, three[0].Seconds, floorOne, floorThree));
            }
        }
        var syncBytes = paired.Count == 0 ? 80e6 : paired.Average(s => s.Bytes);
        var raw = raws.Count == 0 ? 0 : BenchSupport.Middle(raws);
        var transfer = new Transfer(syncBytes, Transfer.AgainstRawAround(paired, raws), raw / 1e6, raws.Count == 0 ? 0 : raws.Min() / raw,
            warmUps.Count == 0 ? 0 : warmUps[0].Seconds, [.. paired.Select(s => s.Bytes / s.Seconds / 1e6)]);
        return (transfer, Broadcast.FromRounds(rounds, broadcastSilos));
    }

    /// <summary>
    /// Runs <paramref name="steps"/> steps (a sync before each but the first) with <paramref name="shards"/> generator
    /// shards and adds each sync's bytes and seconds (the slowest shard's fetch and verify); with
    /// <paramref name="warmUps"/>, the first one goes there: the silo's first sync after its start (JIT, first touch of
    /// its buffers) is not the steady state a run spends its time in. Returns how many generator silos the shards were
    /// spread over.
    /// </summary>
    static async Task<int> SyncTimes(RefAlignClient client, int shards, int steps, List<(double Bytes, double Seconds)> sink,
        List<(double Bytes, double Seconds)>? warmUps, CancellationToken ct)
    {
        // The weights are the preset's whatever the batch: a small batch and short samples keep each step quick.
        var id = await client.StartRunAsync(Config("policy", steps, shards, batch: 6, samples: 2, tokens: 4), ct);
        var silos = new HashSet<string>();
        var first = warmUps is not null;
        await foreach (var e in client.WatchRunAsync(id, 0, ct))
        {
            if (e.Kind != RunEventKind.Step) continue;
            if (e.Metrics.TryGetValue("weight_sync/bytes", out var bytes))
            {
                (first ? warmUps! : sink).Add((bytes / shards, e.Metrics["weight_sync/seconds"]));
                first = false;
            }
            foreach (var g in (await client.GetClusterAsync(ct)).Generators.Where(g => g.RunId == id)) silos.Add(g.Silo);
        }
        await BenchSupport.EnsureCompletedAsync(client, id, "transfer", ct);
        return silos.Count;
    }

    /// <summary>
    /// Bytes per second of one TCP stream over loopback moving <paramref name="total"/> bytes, as a sync does: a fresh
    /// connection, timed from the connect to the last byte in, written in the 8 MB slices the weight server sends.
    /// </summary>
    static async Task<double> RawTcpBytesPerSecond(long total, CancellationToken ct)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var chunk = new byte[8 << 20];
        var buffer = new byte[8 << 20];
        Random.Shared.NextBytes(chunk);
        var sw = Stopwatch.StartNew();
        var receive = Task.Run(async () =>
        {
            using var server = await listener.AcceptTcpClientAsync(ct);
            await using var stream = server.GetStream();
            long got = 0;
            while (got < total)
            {
                var n = await stream.ReadAsync(buffer, ct);
                if (n == 0) break;
                got += n;
            }
            return got;
        }, ct);
        using var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(IPAddress.Loopback, port, ct);
        await using var s = client.GetStream();
        for (long sent = 0; sent < total; sent += chunk.Length) await s.WriteAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, total - sent)), ct);
        var received = await receive;
        return received / sw.Elapsed.TotalSeconds;
    }
}
