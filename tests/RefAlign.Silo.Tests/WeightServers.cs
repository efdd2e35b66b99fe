using System.Net;
using RefAlign.Runtime;

namespace RefAlign.Silo.Tests;

/// <summary>Weight exchanges (and other servers) on loopback for one test, all stopped when it ends.</summary>
public sealed class WeightServers : IAsyncDisposable
{
    readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
    readonly List<Task> _servers = [];

    /// <summary>Cancelled when the test ends (or after two minutes).</summary>
    public CancellationToken Stopping => _stop.Token;

    /// <summary>A server task the test started itself, awaited at the end.</summary>
    public void Track(Task server) => _servers.Add(server);

    /// <summary>A weight exchange that advertises 127.0.0.1, serving on a free loopback port.</summary>
    public async Task<WeightExchange> StartAsync()
    {
        var exchange = new WeightExchange("127.0.0.1");
        Track(exchange.ServeAsync(new IPEndPoint(IPAddress.Loopback, 0), Stopping));
        while (exchange.Port == 0) await Task.Delay(10);
        return exchange;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_servers);
        _stop.Dispose();
    }
}
