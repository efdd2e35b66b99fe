using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace RefAlign.Grains;

/// <summary>Silo services the grains need besides the compute executor.</summary>
public static class GrainsServiceCollectionExtensions
{
    public static IServiceCollection AddRefAlignGrains(this IServiceCollection services)
    {
        services.AddSingleton<ScorerCache>();
        services.AddSingleton<LocalLearners>();
        services.AddSingleton<InPlaceReplicas>();
        // Hosts register their own (the Silo: settings) first; an embedded cluster gets the defaults.
        services.TryAddSingleton(new RunHostOptions());
        // Hosts that run the weight server register a WeightExchange with their address first; elsewhere weights go in chunks.
        services.TryAddSingleton(new RefAlign.Runtime.WeightExchange());
        // One fetch (and relay) of each weight version per silo, shared by the replicas on it.
        services.AddSingleton<ReplicaWeights>();
        services.AddSingleton<IRunControl, GrainRunControl>();
        services.AddSingleton<IIncomingGrainCallFilter, RuntimeTimeoutFilter>();
        return services;
    }
}
