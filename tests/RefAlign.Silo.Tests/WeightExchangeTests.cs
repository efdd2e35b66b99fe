using System.Net;
using RefAlign.Runtime;
using RefAlign.Compute.Formats;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>The silo's TCP weight server: what a generator fetches is bit-identical, and only the current token works.</summary>
public sealed class WeightExchangeTests
{
    [Fact]
    public async Task Published_weights_stream_bit_exactly_and_stale_addresses_are_refused()
    {
        var exchange = new WeightExchange("127.0.0.1");
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var server = exchange.ServeAsync(new IPEndPoint(IPAddress.Loopback, 0), cts.Token);
        while (exchange.Port == 0) await Task.Delay(10);

        using var a = randn(1000, 517);
        using var b = randn(33).to(ScalarType.BFloat16);
        var snapshot = WeightSnapshot.Capture([("a", a), ("b", b)]);
        var address = exchange.Publish("run-1", 3, snapshot);
        Assert.NotNull(address);

        var fetched = await WeightExchange.FetchAsync(address!, snapshot.TotalBytes);
        Assert.Equal(snapshot.Data, fetched);
        Assert.Same(snapshot, exchange.FindLocal(address!));

        // Two versions can be published at once (a pipelined run's generators sample one behind the learner); a
        // retracted version's address is refused, and so is a wrong expected length.
        var newer = exchange.Publish("run-1", 4, snapshot);
        Assert.Same(snapshot, exchange.FindLocal(address!));
        exchange.Retract("run-1", 3);
        Assert.Null(await WeightExchange.FetchAsync(address!, snapshot.TotalBytes));
        Assert.Null(await WeightExchange.FetchAsync(newer!, snapshot.TotalBytes - 1));
        Assert.Null(exchange.FindLocal(address!));
        Assert.Equal(snapshot.Data, await WeightExchange.FetchAsync(newer!, snapshot.TotalBytes));
        exchange.Remove("run-1");
        Assert.Null(exchange.FindLocal(newer!));

        cts.Cancel();
        await server;
    }
}
