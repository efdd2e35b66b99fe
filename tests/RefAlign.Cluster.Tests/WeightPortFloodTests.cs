using System.Net;
using RefAlign.Client;
using Xunit.Abstractions;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// The weight port serves the cluster first, between real silo processes: 64 connections from outside addresses that
/// never present a token, each reopened the moment it is closed, aim at the learner silo's weight port while a generator
/// silo fetches every new weight version from it; the run completes.
/// </summary>
[Trait("Tier", "Process")]
public sealed class WeightPortFloodTests(ITestOutputHelper output) : IAsyncLifetime
{
    readonly DemoWorkspace _workspace = new("refalign-weight-flood-");
    ProcessCluster _cluster = null!;

    public async Task InitializeAsync() =>
        _cluster = await ProcessCluster.StartAsync(_workspace, ("flood-learner", "learner,reference"), ("flood-generator", "generator,scorer,reference"));

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        _workspace.Dispose();
    }

    [Fact]
    public async Task Sixty_four_hostile_connections_and_a_reconnect_flood_do_not_stop_a_weight_sync()
    {
        var learner = _cluster["flood-learner"];
        // The learner silo advertises (and its weight server binds) the first cluster address.
        var target = new IPEndPoint(IPAddress.Parse("127.0.0.2"), learner.WeightPort);
        int closed;
        await using (var flood = WeightPortFlood.Start(target))
        {
            using var client = _cluster.Client("flood-generator");
            // Generators on flood-generator, the learner on flood-learner: every step's weights cross the flooded port.
            var id = await client.StartRunAsync(TinyRuns.RefAlign("flooded", 4, checkpointEvery: 0));
            await foreach (var _ in client.WatchRunAsync(id, 0, new CancellationTokenSource(TimeSpan.FromMinutes(6)).Token)) { }
            var run = await client.GetRunAsync(id);
            Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}\n{_cluster.Logs()}");
            Assert.Equal(4, run.WeightVersion);
            closed = flood.Closed;
            Assert.True(closed > 0, "the flood never reached the learner's weight port");
        }
        output.WriteLine($"{closed} hostile connections closed by the learner silo while the run's 4 weight versions reached the generator silo");
        Assert.True(learner.IsRunning);
    }
}
