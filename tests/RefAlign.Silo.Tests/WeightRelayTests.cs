using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using Microsoft.Extensions.Logging.Abstractions;
using RefAlign.Compute.Formats;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Grains;
using RefAlign.Runtime;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Relayed weight streams over real loopback TCP, several exchanges in one process: a silo serves a version while it
/// is still arriving, a chain of silos gets identical bytes while the learner sends once, and a broken upstream falls
/// back to the learner.
/// </summary>
public sealed class WeightRelayTests : IAsyncDisposable
{
    readonly WeightServers _servers = new();

    public ValueTask DisposeAsync() => _servers.DisposeAsync();

    static WeightSnapshot Weights()
    {
        using var a = randn(1500, 1024);
        using var b = randn(77).to(ScalarType.BFloat16);
        return WeightSnapshot.Capture([("a", a), ("b", b)]);
    }

    [Fact]
    public async Task A_publication_still_arriving_is_served_to_a_second_reader_bit_for_bit()
    {
        var snapshot = Weights();
        var relay = await _servers.StartAsync();
        var (publication, relayed) = relay.BeginRelay("run-1", 2, snapshot.TotalBytes);
        var address = Assert.IsType<string>(relayed);
        Assert.Null(relay.BeginRelay("run-1", 2, snapshot.TotalBytes).Address); // one relay per version
        Assert.Null(relay.FindLocal(address)); // not complete: nothing to use in place yet

        // The reader connects before a byte is in and is fed in uneven steps, with pauses.
        var reading = WeightExchange.FetchAsync(address, snapshot.TotalBytes);
        var cuts = new long[] { 0, 1, 4096, 1 << 20, 3_000_001, snapshot.TotalBytes / 2, snapshot.TotalBytes - 3, snapshot.TotalBytes };
        foreach (var (from, to) in cuts.Zip(cuts.Skip(1)))
        {
            snapshot.Data.AsSpan((int)from, (int)(to - from)).CopyTo(publication.Data.AsSpan((int)from));
            publication.Progress.Advance(to);
            await Task.Delay(20);
            Assert.False(reading.IsCompleted && to < snapshot.TotalBytes, $"the reader finished with {to} bytes in");
        }
        publication.Complete(snapshot);
        Assert.Equal(snapshot.Data, await reading);
        Assert.Equal(1, relay.TimesServed("run-1", 2));

        // A relay whose upstream fails cuts its readers (they fall back), rather than leaving them waiting.
        var (failing, failingAddress) = relay.BeginRelay("run-1", 3, snapshot.TotalBytes);
        var cut = WeightExchange.FetchAsync(failingAddress!, snapshot.TotalBytes);
        snapshot.Data.AsSpan(0, 1000).CopyTo(failing.Data);
        failing.Progress.Advance(1000);
        failing.Progress.Fail();
        await Assert.ThrowsAnyAsync<EndOfStreamException>(() => cut);
    }

    [Fact]
    public async Task Three_silos_relayed_in_a_chain_get_identical_bytes_and_the_learner_sends_once()
    {
        var snapshot = Weights();
        var learnerExchange = await _servers.StartAsync();
        var learner = FakeLearner.Create(snapshot, learnerExchange.Publish("run-1", 5, snapshot)!);
        var silos = new List<(WeightExchange Exchange, ReplicaWeights Replicas)>();
        for (var i = 0; i < 3; i++)
        {
            var e = await _servers.StartAsync();
            silos.Add((e, new ReplicaWeights(e, NullLogger<ReplicaWeights>.Instance)));
        }
        var manifest = FakeLearner.Manifest(learner);

        // Two replicas on each silo, all at once: one fetch per silo, silo k reads from silo k − 1.
        var fetched = await Task.WhenAll(silos.SelectMany(s => new[] { s.Replicas.GetAsync(learner, "run-1", manifest), s.Replicas.GetAsync(learner, "run-1", manifest) }));
        Assert.All(fetched, f => Assert.Equal(snapshot.Data, f.Snapshot.Data));
        Assert.Equal(1, learnerExchange.TimesServed("run-1", 5));
        Assert.Equal([1, 1, 0], silos.Select(s => s.Exchange.TimesServed("run-1", 5)));
        Assert.Same(fetched[0].Snapshot, fetched[1].Snapshot);
        Assert.Equal(3, FakeLearner.Of(learner).Joined.Count);
    }

    [Fact]
    public async Task A_cut_or_lying_upstream_falls_back_to_the_learner()
    {
        var snapshot = Weights();
        var learnerExchange = await _servers.StartAsync();
        var origin = learnerExchange.Publish("run-1", 5, snapshot)!;
        var corrupted = (byte[])snapshot.Data.Clone();
        corrupted[123_456] ^= 0x10;
        foreach (var body in new[] { snapshot.Data[..(snapshot.Data.Length / 3)], corrupted })
        {
            var upstream = await ImpostorAsync(snapshot.TotalBytes, body);
            var learner = FakeLearner.Create(snapshot, origin, upstreamOverride: $"tcp://127.0.0.1:{upstream}/run-1/5/0123");
            var silo = await _servers.StartAsync();
            var replicas = new ReplicaWeights(silo, NullLogger<ReplicaWeights>.Instance);
            using var got = await replicas.GetAsync(learner, "run-1", FakeLearner.Manifest(learner));
            Assert.Equal(snapshot.Data, got.Snapshot.Data);
        }
        Assert.Equal(2, learnerExchange.TimesServed("run-1", 5));
    }

    /// <summary>A server that answers every request with <paramref name="announced"/> as the length, then <paramref name="body"/>.</summary>
    async Task<int> ImpostorAsync(long announced, byte[] body)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        _servers.Track(Task.Run(async () =>
        {
            using var _ = listener;
            try
            {
                while (!_servers.Stopping.IsCancellationRequested)
                {
                    using var c = await listener.AcceptTcpClientAsync(_servers.Stopping);
                    var s = c.GetStream();
                    await s.ReadAtLeastAsync(new byte[256], 1, throwOnEndOfStream: false, _servers.Stopping);
                    var header = new byte[8];
                    BinaryPrimitives.WriteInt64LittleEndian(header, announced);
                    await s.WriteAsync(header, _servers.Stopping);
                    await s.WriteAsync(body, _servers.Stopping);
                }
            }
            catch (OperationCanceledException) { }
        }));
        await Task.Yield();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// The learner's weight calls without a cluster: the manifest, the relay chain (as <see cref="LearnerGrain"/> keeps
    /// it, or one fixed upstream), and chunks.
    /// </summary>
    public class FakeLearner : DispatchProxy
    {
        WeightSnapshot _snapshot = null!;
        string _origin = null!;
        string? _upstreamOverride;
        string? _tail;
        public List<string> Joined { get; } = [];

        public static ILearnerGrain Create(WeightSnapshot snapshot, string origin, string? upstreamOverride = null)
        {
            var proxy = Create<ILearnerGrain, FakeLearner>();
            var fake = (FakeLearner)(object)proxy;
            (fake._snapshot, fake._origin, fake._upstreamOverride) = (snapshot, origin, upstreamOverride);
            return proxy;
        }

        public static FakeLearner Of(ILearnerGrain learner) => (FakeLearner)(object)learner;

        public static WeightsManifest Manifest(ILearnerGrain learner, long version = 5)
        {
            var f = Of(learner);
            return new WeightsManifest(version, f._snapshot.ChunkCount(LearnerGrain.ChunkBytes), LearnerGrain.ChunkBytes, f._snapshot.TotalBytes,
                [.. f._snapshot.Entries.Select(e => e.ToMessage())], f._origin, f._snapshot.Digest());
        }

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            switch (method!.Name)
            {
                case nameof(ILearnerGrain.JoinRelay):
                    lock (Joined)
                    {
                        Joined.Add((string)args![1]!);
                        var upstream = _upstreamOverride ?? _tail ?? _origin;
                        _tail = (string)args[1]!;
                        return Task.FromResult<string?>(upstream);
                    }
                case nameof(ILearnerGrain.GetWeightsChunk):
                    return Task.FromResult(_snapshot.Chunk((int)args![1]!, LearnerGrain.ChunkBytes));
                default:
                    throw new NotSupportedException(method.Name);
            }
        }
    }
}
