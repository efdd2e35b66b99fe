using System.Net;
using System.Net.Sockets;
using RefAlign.Compute.Formats;
using RefAlign.Runtime;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The weight port serves the cluster first: connections that never present a token hold a place only until the token
/// deadline, places are capped per peer address, and outsiders cannot take the places kept for the cluster's silos, so
/// 64 silent connections and a flood of reconnections from outside never keep a member from its weights.
/// </summary>
public sealed class WeightPortTests
{
    // Outsiders connect from other loopback addresses (the whole 127/8 is local on Linux); the member is 127.0.0.1.
    static IPAddress Outsider(int i) => IPAddress.Parse($"127.0.0.{10 + i % 16}");

    static async Task<TcpClient> ConnectFromAsync(IPAddress from, int port, CancellationToken cancellation)
    {
        var client = new TcpClient(new IPEndPoint(from, 0));
        await client.ConnectAsync(IPAddress.Loopback, port, cancellation);
        return client;
    }

    /// <summary>True once the server closed <paramref name="client"/> (a read returns 0 or fails).</summary>
    static async Task<bool> ClosedAsync(TcpClient client, CancellationToken cancellation)
    {
        try { return await client.GetStream().ReadAsync(new byte[16], cancellation) == 0; }
        catch (IOException) { return true; }
    }

    static async Task<WeightExchange> StartAsync(WeightServers servers, WeightPortOptions options)
    {
        var exchange = new WeightExchange("127.0.0.1", options);
        servers.Track(exchange.ServeAsync(new IPEndPoint(IPAddress.Loopback, 0), servers.Stopping, peer => peer.Equals(IPAddress.Loopback)));
        while (exchange.Port == 0) await Task.Delay(10);
        return exchange;
    }

    [Fact]
    public async Task A_silent_connection_is_closed_at_the_token_deadline_without_a_transfer_place()
    {
        await using var servers = new WeightServers();
        var exchange = await StartAsync(servers, new WeightPortOptions { TokenDeadline = TimeSpan.FromMilliseconds(500) });
        using var silent = await ConnectFromAsync(Outsider(0), exchange.Port, servers.Stopping);
        using var ceiling = CancellationTokenSource.CreateLinkedTokenSource(servers.Stopping);
        ceiling.CancelAfter(TimeSpan.FromSeconds(60));
        Assert.True(await ClosedAsync(silent, ceiling.Token));
        Assert.Equal(0, exchange.ActiveConnections);
    }

    [Fact]
    public async Task Per_peer_places_are_capped_and_outsiders_cannot_take_the_members_reserve()
    {
        await using var servers = new WeightServers();
        var options = new WeightPortOptions { TokenDeadline = TimeSpan.FromSeconds(60), SlotsPerPeer = 2, MaxHandshakes = 6, MemberHandshakes = 2 };
        var exchange = await StartAsync(servers, options);
        var held = new List<TcpClient>();
        try
        {
            // One outsider address: two places, the third is closed at once.
            for (var i = 0; i < 3; i++) held.Add(await ConnectFromAsync(Outsider(0), exchange.Port, servers.Stopping));
            Assert.True(await ClosedAsync(held[2], servers.Stopping));
            // Other outsiders fill what the members' reserve leaves (6 − 2 = 4 in all), then are closed.
            held.Add(await ConnectFromAsync(Outsider(1), exchange.Port, servers.Stopping));
            held.Add(await ConnectFromAsync(Outsider(1), exchange.Port, servers.Stopping));
            var over = await ConnectFromAsync(Outsider(2), exchange.Port, servers.Stopping);
            held.Add(over);
            Assert.True(await ClosedAsync(over, servers.Stopping));
            // The member still gets in (and is served, below the flood test shows the transfer).
            var member = await ConnectFromAsync(IPAddress.Loopback, exchange.Port, servers.Stopping);
            held.Add(member);
            while (exchange.PendingConnections < 5) await Task.Delay(10, servers.Stopping);
            Assert.Equal(5, exchange.PendingConnections);
        }
        finally
        {
            foreach (var c in held) c.Dispose();
        }
    }

    [Fact]
    public async Task Sixty_four_silent_connections_and_a_reconnect_flood_do_not_keep_a_member_from_its_weights()
    {
        await using var servers = new WeightServers();
        var exchange = await StartAsync(servers, new WeightPortOptions());
        using var a = randn(512, 512);
        using var b = randn(1000);
        var snapshot = WeightSnapshot.Capture([("a", a), ("b", b)]);
        var address = exchange.Publish("run-1", 1, snapshot)!;

        // 64 hostile connections from 16 outside addresses, each reopened the moment the server closes it.
        await using var flood = WeightPortFlood.Start(new IPEndPoint(IPAddress.Loopback, exchange.Port), firstAddress: 10);
        // Until the flood has been turned away many times over: every place outsiders may hold is taken and retaken.
        while (flood.Closed < 200) await Task.Delay(20, servers.Stopping);
        for (var fetch = 0; fetch < 20; fetch++)
        {
            var received = await WeightExchange.FetchAsync(address, snapshot.TotalBytes, servers.Stopping);
            Assert.NotNull(received);
            Assert.Equal(snapshot.Digest(), WeightSnapshot.FromChunks(snapshot.Entries, [received!]).Digest());
        }
        Assert.Equal(20, exchange.TimesServed("run-1", 1));
    }
}
