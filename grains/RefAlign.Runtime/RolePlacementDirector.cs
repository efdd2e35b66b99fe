using System.Collections.Concurrent;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;
using Microsoft.Extensions.Logging;

namespace RefAlign.Runtime;

/// <summary>
/// Director for <see cref="RolePlacement"/>: a random compatible silo whose metadata lists the role, preferring
/// accelerator silos when the strategy asks; any compatible silo (with a warning) when no silo has the role.
/// </summary>
internal sealed class RolePlacementDirector(ISiloMetadataCache metadata, ILogger<RolePlacementDirector> logger) : IPlacementDirector
{
    private readonly ConcurrentDictionary<string, DateTime> _lastWarning = new(StringComparer.Ordinal);

    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var placement = strategy as RolePlacement ?? throw new ArgumentException($"Expected {nameof(RolePlacement)}, got {strategy}.", nameof(strategy));
        var compatible = context.GetCompatibleSilos(target);
        if (compatible.Length == 0)
        {
            throw new OrleansException($"No compatible silo for {target.GrainIdentity}.");
        }

        var candidates = compatible
            .Select(s => new Candidate(s, metadata.GetSiloMetadata(s).Metadata))
            .ToArray();
        var chosen = Choose(placement.Role, placement.PreferAccelerator, candidates, Random.Shared, out var fellBack);
        if (fellBack)
        {
            WarnFallback(placement.Role, target, chosen);
        }

        return Task.FromResult(chosen);
    }

    /// <summary>The placement rule on its own, so it can be tested without a cluster.</summary>
    internal static SiloAddress Choose(string role, bool preferAccelerator, IReadOnlyList<Candidate> candidates, Random random, out bool fellBack)
    {
        var withRole = candidates
            .Where(c => SiloMetadataKeys.ParseRoles(c.Metadata.GetValueOrDefault(SiloMetadataKeys.Roles)).Contains(role, StringComparer.Ordinal))
            .ToArray();
        fellBack = withRole.Length == 0;
        var pool = fellBack ? candidates.ToArray() : withRole;
        if (preferAccelerator && pool.Where(c => SiloMetadataKeys.IsAccelerator(c.Metadata.GetValueOrDefault(SiloMetadataKeys.Device))).ToArray() is { Length: > 0 } accelerated)
        {
            pool = accelerated;
        }

        return pool[random.Next(pool.Length)].Silo;
    }

    private void WarnFallback(string role, PlacementTarget target, SiloAddress chosen)
    {
        // One warning per role a minute: a burst of activations should not flood the log.
        var now = DateTime.UtcNow;
        if (_lastWarning.TryGetValue(role, out var last) && now - last < TimeSpan.FromMinutes(1))
        {
            return;
        }

        _lastWarning[role] = now;
        logger.LogWarning(
            "No silo has role {Role}; placing {Grain} on {Silo} instead. Give a silo the role with Silo:Roles.",
            role, target.GrainIdentity, chosen);
    }

    internal sealed record Candidate(SiloAddress Silo, IReadOnlyDictionary<string, string> Metadata);
}
