using Grpc.Core;
using Xunit.Abstractions;

namespace RefAlign.Silo.Tests;

/// <summary>
/// A silo whose Redis (membership and grain state) goes away: the calls that need it answer UNAVAILABLE naming the
/// store and its setting, never UNKNOWN, and the silo stays up to serve again once Redis is back.
/// </summary>
[Trait("Tier", "Process")]
public sealed class MembershipStoreLossTests(ITestOutputHelper output) : IDisposable
{
    readonly DemoWorkspace _workspace = new("refalign-redis-loss-");

    public void Dispose() => _workspace.Dispose();

    [Fact]
    public async Task A_lost_redis_is_unavailable_naming_the_store_and_the_silo_survives()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var silo = await SiloProcess.StartAsync("redis-loss", _workspace.Root,
            ["--Cluster:Provider=Redis", $"--Cluster:ConnectionString={redis.ConnectionString}", "--GrainStorage:Provider=Redis",
             $"--Silo:ClusterId=loss-{Guid.NewGuid():N}"[..30]]);
        using var client = new RefAlign.Client.RefAlignClient(new RefAlign.Client.RefAlignClientOptions
        {
            Address = new Uri(silo.GrpcAddress), CallTimeout = TimeSpan.FromSeconds(90), UnaryRetries = 0,
        });
        Assert.Single((await client.GetClusterAsync()).Silos);
        await redis.KillAsync();

        // The cluster view reads the membership table; a new run writes grain state: both need Redis.
        var cluster = await Assert.ThrowsAsync<RpcException>(() => client.GetClusterAsync());
        var start = await Assert.ThrowsAsync<RpcException>(() => client.StartRunAsync(TinyRuns.RefAlign("no-redis", 1)));
        foreach (var (attempt, e) in new[] { ("GetCluster with Redis down", cluster), ("StartRun with Redis down", start) })
        {
            output.WriteLine($"| {attempt} | {e.StatusCode} | {e.Status.Detail} |");
            Assert.True(e.StatusCode == StatusCode.Unavailable, $"{attempt}: {e.StatusCode} {e.Status.Detail}");
            Assert.Contains("Redis", e.Status.Detail);
            Assert.Contains("ConnectionString", e.Status.Detail);
        }
        Assert.True(silo.IsRunning, silo.Log());
    }
}
