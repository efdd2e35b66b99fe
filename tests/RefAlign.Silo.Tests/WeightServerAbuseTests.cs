using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using RefAlign.Client;
using RefAlign.Compute.Formats;
using RefAlign.Runtime;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The weight server under abuse, on loopback: an endless request line, a slow client, a thousand connections at once,
/// wrong tokens; and the client side against a server that cuts or corrupts the stream.
/// </summary>
[Trait("Tier", "Process")]
public sealed class WeightServerAbuseTests : IDisposable
{
    readonly DemoWorkspace _workspace = new("refalign-weights-abuse-");

    public void Dispose() => _workspace.Dispose();

    static async Task<byte[]> SendAsync(int port, byte[] request, TimeSpan wait)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        var stream = client.GetStream();
        try { await stream.WriteAsync(request); }
        catch (IOException) { return []; }
        using var cts = new CancellationTokenSource(wait);
        var answer = new MemoryStream();
        var buffer = new byte[64];
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, cts.Token)) > 0) answer.Write(buffer, 0, read);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException) { }
        return answer.ToArray();
    }

    [Fact]
    public async Task A_silo_under_attack_on_its_weight_port_stays_healthy_and_its_run_completes()
    {
        await using var silo = await SiloProcess.StartAsync("weights-abuse", _workspace.Root);
        using var client = new RefAlignClient(silo.GrpcAddress);
        var runId = await client.StartRunAsync(TinyRuns.RefAlign("under-attack", 30, checkpointEvery: 10));
        var port = silo.WeightPort;

        // An endless request line: cut off after the size limit, never buffered.
        var endless = await SendAsync(port, Encoding.ASCII.GetBytes(new string('x', 1 << 20)), TimeSpan.FromSeconds(10));
        Assert.Empty(endless);
        // A wrong token: answered "gone" (-1), nothing else.
        var wrong = await SendAsync(port, Encoding.ASCII.GetBytes($"{runId} 1 0123456789abcdef0123456789abcdef\n"), TimeSpan.FromSeconds(10));
        Assert.Equal(-1, BinaryPrimitives.ReadInt64LittleEndian(wrong));
        // A slow client (a byte a second) is dropped at the request deadline.
        using (var slow = new TcpClient())
        {
            await slow.ConnectAsync(IPAddress.Loopback, port);
            var stream = slow.GetStream();
            var started = DateTime.UtcNow;
            var closed = false;
            for (var i = 0; i < 15 && !closed; i++)
            {
                try
                {
                    await stream.WriteAsync("a"u8.ToArray());
                    await Task.Delay(1000);
                    closed = slow.Client.Poll(0, SelectMode.SelectRead) && slow.Available == 0;
                }
                catch (IOException) { closed = true; }
            }
            Assert.True(closed, "the slow client was never dropped");
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(12));
        }
        // A thousand connections at once: the excess is closed at once, nothing piles up.
        var flood = new List<TcpClient>();
        try
        {
            for (var i = 0; i < 1000; i++)
            {
                var c = new TcpClient();
                try { await c.ConnectAsync(IPAddress.Loopback, port); }
                catch (SocketException) { }
                flood.Add(c);
            }
            using var http = new HttpClient();
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{silo.HttpPort}/healthz")).StatusCode);
        }
        finally
        {
            foreach (var c in flood) c.Dispose();
        }

        // Meanwhile, and after, training went on.
        await foreach (var _ in client.WatchRunAsync(runId, 0, new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token)) { }
        var run = await client.GetRunAsync(runId);
        Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");
        Assert.True(silo.IsRunning);
    }

    /// <summary>A server that answers every request with the right length, then <paramref name="body"/>.</summary>
    static async Task<(int Port, Task Serving)> ImpostorAsync(long announced, byte[] body, CancellationToken stop)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serving = Task.Run(async () =>
        {
            using var _ = listener;
            while (!stop.IsCancellationRequested)
            {
                using var c = await listener.AcceptTcpClientAsync(stop);
                var s = c.GetStream();
                var line = new byte[256];
                await s.ReadAtLeastAsync(line, 1, throwOnEndOfStream: false, stop);
                var header = new byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(header, announced);
                await s.WriteAsync(header, stop);
                await s.WriteAsync(body, stop);
            }
        }, stop);
        return (port, serving);
    }

    [Fact]
    public async Task A_cut_stream_throws_and_a_corrupted_one_does_not_match_the_digest()
    {
        using var a = randn(300, 200);
        var snapshot = WeightSnapshot.Capture([("a", a)]);
        var digest = snapshot.Digest();
        using var stop = new CancellationTokenSource();

        var (cutPort, _) = await ImpostorAsync(snapshot.TotalBytes, snapshot.Data[..(snapshot.Data.Length / 2)], stop.Token);
        await Assert.ThrowsAnyAsync<EndOfStreamException>(() => WeightExchange.FetchAsync($"tcp://127.0.0.1:{cutPort}/run/1/token", snapshot.TotalBytes));

        var corrupted = (byte[])snapshot.Data.Clone();
        corrupted[12345] ^= 0x40;
        var (badPort, _) = await ImpostorAsync(snapshot.TotalBytes, corrupted, stop.Token);
        var received = await WeightExchange.FetchAsync($"tcp://127.0.0.1:{badPort}/run/1/token", snapshot.TotalBytes);
        Assert.NotNull(received);
        // What the generator does before applying: the bytes must match the manifest's digest.
        Assert.NotEqual(digest, WeightSnapshot.FromChunks(snapshot.Entries, [received!]).Digest());
        Assert.Equal(digest, WeightSnapshot.FromChunks(snapshot.Entries, [snapshot.Data]).Digest());
        stop.Cancel();
    }
}
