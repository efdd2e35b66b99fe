using System.Threading.Channels;
using Grpc.Core;

namespace RefAlign.Client.Tests;

/// <summary>A watch stream that outlives its server: stopped and restarted on the same port mid-stream.</summary>
public sealed class WatchReconnectTests
{
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    static RefAlignClientOptions Fast(RefAlignClientOptions o) => o with
    {
        WatchInitialBackoff = TimeSpan.FromMilliseconds(50),
        WatchMaxBackoff = TimeSpan.FromMilliseconds(300),
        WatchMaxReconnects = 40,
    };

    [Fact]
    public async Task WatchSurvivesServerRestartWithoutGapOrDuplicate()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client(configure: Fast);
        var id = await control.StartRunAsync(ControlApiTests.ValidConfig);

        var received = Channel.CreateUnbounded<RunEvent>();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var watcher = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in client.WatchRunAsync(id, 0, cts.Token)) await received.Writer.WriteAsync(e);
                received.Writer.Complete();
            }
            catch (Exception e)
            {
                received.Writer.Complete(e);
            }
        });
        var seen = new List<RunEvent>();
        async Task ReadUntil(long sequence)
        {
            while (seen.Count == 0 || seen[^1].Sequence < sequence)
                seen.Add(await received.Reader.ReadAsync().AsTask().WaitAsync(Patience));
        }

        for (var i = 0; i < 3; i++) control.Step(id, Metrics(i), ("generate", 0.5), ("learn", 1.0));
        await ReadUntil(control.Events(id)[^1].Sequence);
        Assert.Equal(1, control.WatchCalls);

        // The server goes away mid-stream; the run goes on and logs events nobody is connected to see.
        await silo.StopAsync();
        for (var i = 3; i < 5; i++) control.Step(id, Metrics(i), ("generate", 0.5), ("learn", 1.0));
        await Task.Delay(300);
        await silo.RestartAsync();
        for (var i = 5; i < 7; i++) control.Step(id, Metrics(i), ("generate", 0.5), ("learn", 1.0));
        control.Complete(id);

        await watcher.WaitAsync(Patience);
        await foreach (var e in received.Reader.ReadAllAsync()) seen.Add(e);

        var expected = control.Events(id);
        ControlApiTests.AssertSameEvents(expected, seen);
        Assert.Equal(Enumerable.Range(1, expected.Count).Select(i => (long)i), seen.Select(e => e.Sequence));
        Assert.Equal(RunStatus.Completed, seen[^1].Status);
        Assert.True(control.WatchCalls >= 2, $"the client should have reconnected (watch calls: {control.WatchCalls})");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WatchResumesWhenTheSiloGivesTheStreamUp(bool cleanly)
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client(configure: Fast);
        var id = await control.StartRunAsync(ControlApiTests.ValidConfig);
        control.Step(id, Metrics(0), ("learn", 1.0));

        var seen = new List<RunEvent>();
        await using var e = client.WatchRunAsync(id).GetAsyncEnumerator();
        while (seen.Count < control.Events(id).Count && await e.MoveNextAsync()) seen.Add(e.Current);
        // The backend's watch is given up on the silo's side, with an error (UNAVAILABLE) or by closing the stream while
        // the run goes on: either way the client reconnects.
        control.AbortWatches(cleanly);
        await Task.Delay(200); // let the client see the end before the next events exist
        control.Step(id, Metrics(1), ("learn", 1.0));
        control.Complete(id);
        while (await e.MoveNextAsync().AsTask().WaitAsync(Patience)) seen.Add(e.Current);

        ControlApiTests.AssertSameEvents(control.Events(id), seen);
        Assert.Equal(2, control.WatchCalls);
    }

    [Fact]
    public async Task WatchGivesUpAfterBoundedRetries()
    {
        var control = new InMemoryRunControl();
        var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client(configure: o => o with
        {
            WatchInitialBackoff = TimeSpan.FromMilliseconds(20),
            WatchMaxBackoff = TimeSpan.FromMilliseconds(50),
            WatchMaxReconnects = 3,
        });
        var id = await control.StartRunAsync(ControlApiTests.ValidConfig);
        await using var e = client.WatchRunAsync(id).GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync());
        await silo.StopAsync(); // and never comes back

        var error = await Assert.ThrowsAsync<RpcException>(async () => await e.MoveNextAsync().AsTask().WaitAsync(Patience));
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.Equal(1, control.WatchCalls); // the reconnect attempts never reached a server
    }

    static Dictionary<string, double> Metrics(int i) => new() { ["loss"] = 1.0 / (i + 1), ["tokens_per_second"] = 100 + i };
}
