using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using RefAlign.Compute.Formats;
using RefAlign.Grains;
using RefAlign.Runtime;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Weight buffers reused from version to version (<see cref="WeightBuffers"/>), over real loopback streams: a replica's
/// next version lands in the buffer of one nobody reads any more, never in one a replica still applies or a stream still
/// sends, and every byte arrives as published.
/// </summary>
public sealed class WeightBufferReuseTests : IAsyncDisposable
{
    readonly WeightServers _servers = new();

    public ValueTask DisposeAsync() => _servers.DisposeAsync();

    static WeightSnapshot Version(int seed, int floats)
    {
        using var g = new Generator((ulong)seed);
        using var a = randn([floats / 64, 64], generator: g);
        return WeightSnapshot.Capture([("a", a)]);
    }

    [Fact]
    public async Task A_replica_reuses_the_buffer_of_a_version_nobody_reads_and_never_one_still_leased()
    {
        var learnerExchange = await _servers.StartAsync();
        var replicaExchange = await _servers.StartAsync();
        var replicas = new ReplicaWeights(replicaExchange, NullLogger<ReplicaWeights>.Instance);
        var versions = Enumerable.Range(1, 4).Select(v => Version(v, 1 << 18)).ToList();
        var size = versions[0].TotalBytes;
        Task<WeightLease> Get(int v)
        {
            var learner = WeightRelayTests.FakeLearner.Create(versions[v - 1], learnerExchange.Publish("run-1", v, versions[v - 1])!);
            return replicas.GetAsync(learner, "run-1", WeightRelayTests.FakeLearner.Manifest(learner, v));
        }

        var first = await Get(1); // still being applied while the next versions arrive
        using (var second = await Get(2)) Assert.Equal(versions[1].Data, second.Snapshot.Data);
        using (var third = await Get(3))
        {
            // Version 1 is stale now, but leased: version 3 gets a buffer of its own, and version 1's bytes stay.
            Assert.NotSame(first.Snapshot.Data, third.Snapshot.Data);
            Assert.Equal(versions[2].Data, third.Snapshot.Data);
            Assert.Equal(versions[0].Data, first.Snapshot.Data);
        }
        Assert.Equal(0, replicaExchange.Buffers.Spares(size));
        var reusable = first.Snapshot.Data;
        first.Dispose();
        first.Dispose(); // a second dispose releases nothing twice
        Assert.Equal(1, replicaExchange.Buffers.Spares(size));

        // Version 4 makes version 2 stale too; it lands in one of the two freed buffers, and bit for bit.
        using var fourth = await Get(4);
        Assert.Equal(versions[3].Data, fourth.Snapshot.Data);
        Assert.Same(reusable, fourth.Snapshot.Data);
        Assert.Equal(1, replicaExchange.Buffers.Spares(size));
    }

    [Fact]
    public async Task A_retracted_version_keeps_its_buffer_until_the_stream_sending_it_is_done()
    {
        var exchange = await _servers.StartAsync();
        // Larger than both socket buffers together, so the server is still writing when the version is retracted.
        var snapshot = Version(7, 6 << 20);
        var address = new Uri(exchange.Publish("run-1", 1, snapshot, recycle: true)!);
        var path = address.AbsolutePath.Trim('/').Split('/');
        using var client = new TcpClient { ReceiveBufferSize = 64 << 10 };
        await client.ConnectAsync(IPAddress.Loopback, address.Port);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"{path[0]} {path[1]} {path[2]}\n"));
        var header = new byte[8];
        await stream.ReadExactlyAsync(header);
        Assert.Equal(snapshot.TotalBytes, BinaryPrimitives.ReadInt64LittleEndian(header));
        var got = new byte[snapshot.TotalBytes];
        await stream.ReadExactlyAsync(got.AsMemory(0, 4096));

        var expected = (byte[])snapshot.Data.Clone();
        exchange.Retract("run-1", 1);
        Assert.Equal(0, exchange.Buffers.Spares(snapshot.TotalBytes)); // the stream still holds it
        // A capture now must not land in the buffer being sent.
        Assert.NotSame(snapshot.Data, exchange.Buffers.Rent(snapshot.TotalBytes));
        await stream.ReadExactlyAsync(got.AsMemory(4096));
        Assert.Equal(expected, got);

        // Once the server is done with the stream, the buffer is a spare.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (exchange.Buffers.Spares(snapshot.TotalBytes) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the retracted version's buffer never came back after its stream ended");
            await Task.Delay(20);
        }
        Assert.Same(snapshot.Data, exchange.Buffers.Rent(snapshot.TotalBytes));
    }

    [Fact]
    public void The_pool_keeps_at_most_two_spares_and_prepares_resident_ones()
    {
        var buffers = new WeightBuffers();
        buffers.Prepare(1 << 20, 5);
        Assert.Equal(WeightBuffers.MaxSpares, buffers.Spares(1 << 20));
        var (a, b) = (buffers.Rent(1 << 20), buffers.Rent(1 << 20));
        Assert.NotSame(a, b);
        Assert.Equal(0, buffers.Spares(1 << 20));
        Assert.Equal(1 << 19, buffers.Rent(1 << 19).Length); // no spare of that size: a new one

        var c = new byte[1 << 20];
        foreach (var x in new[] { a, b, c }) buffers.Return(x);
        Assert.Equal(2, buffers.Spares(1 << 20));
        Assert.Same(b, buffers.Rent(1 << 20)); // the oldest (a) made room
        Assert.Same(c, buffers.Rent(1 << 20));
        Assert.Throws<NotSupportedException>(() => buffers.Rent((long)Array.MaxLength + 1));

        // A capture into a buffer of the wrong size is refused rather than truncated.
        using var t = ones(4);
        Assert.Throws<ArgumentException>(() => WeightSnapshot.Capture([("t", t)], _ => new byte[3]));
    }
}
