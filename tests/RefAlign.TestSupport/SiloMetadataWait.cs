using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.TestingHost;
using RefAlign.Runtime;

namespace RefAlign.TestSupport;

public static class SiloMetadataWait
{
    /// <summary>
    /// Placement reads the silo metadata cache, which fills asynchronously from membership: waits until every silo of
    /// <paramref name="cluster"/> knows every other silo's roles.
    /// </summary>
    public static async Task UntilRolesPropagateAsync(this InProcessTestCluster cluster, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!cluster.Silos.All(s => cluster.Silos.All(other =>
                   s.ServiceProvider.GetRequiredService<ISiloMetadataCache>().GetSiloMetadata(other.SiloAddress).Metadata.ContainsKey(SiloMetadataKeys.Roles))))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("silo metadata did not propagate");
            await Task.Delay(100);
        }
    }
}
