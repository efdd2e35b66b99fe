using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>The runtime's own timeouts reach a caller on another silo as a fault it can classify, not as a codec error.</summary>
[Collection(ClusterCollection.Name)]
public sealed class RuntimeTimeoutTests(ClusterFixture fixture)
{
    [Fact]
    public async Task A_runtime_timeout_in_a_grain_arrives_as_a_transient_timeout()
    {
        var e = await Assert.ThrowsAsync<TimeoutException>(() => fixture.Client.GetGrain<IRuntimeTimeoutProbeGrain>(1).Fail());
        Assert.Contains("the runtime timed out", e.Message);
        Assert.Equal(FaultKind.Transient, ClusterFaults.Classify(e).Kind);
    }
}
