using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace RefAlign.Runtime;

/// <summary>
/// Director for <see cref="RolePlacement"/>. A caller's placement hint (<see cref="IPlacementDirector.PlacementHintKey"/>
/// in the request context) wins when it names a compatible silo with the role: that is how a run spreads its shards
/// over the silos of a role. Otherwise a random compatible silo with the role, preferring accelerators when the
/// strategy asks. With no silo of the role, the learner waits (<see cref="NoSiloForRoleException"/>: it must never train
/// on a silo not meant for it); other roles go to any compatible silo, with a warning. With
/// <see cref="LearnerPlacementOptions.RequireAccelerator"/> a learner never lands on a CPU silo: while no accelerator
/// learner silo is active it waits, visibly, instead of silently training on the CPU.
/// </summary>
internal sealed class RolePlacementDirector(ISiloMetadataCache metadata, LearnerPlacementOptions learner, ILogger<RolePlacementDirector> logger) : IPlacementDirector
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

        var candidates = compatible.Select(s => new Candidate(s, metadata.GetSiloMetadata(s).Metadata)).ToArray();
        if (IPlacementDirector.GetPlacementHint(target.RequestContextData, compatible) is { } hinted
            && candidates.Any(c => c.Silo.Equals(hinted) && c.HasRole(placement.Role)))
        {
            return Task.FromResult(hinted);
        }

        var chosen = Choose(placement.Role, placement.PreferAccelerator, candidates, Random.Shared, out var fellBack, learner.RequireAccelerator);
        if (fellBack)
        {
            WarnFallback(placement.Role, target, chosen);
        }

        return Task.FromResult(chosen);
    }

    /// <summary>The placement rule on its own, so it can be tested without a cluster.</summary>
    internal static SiloAddress Choose(string role, bool preferAccelerator, IReadOnlyList<Candidate> candidates, Random random, out bool fellBack,
        bool learnerRequiresAccelerator = false)
    {
        var withRole = candidates.Where(c => c.HasRole(role)).ToArray();
        fellBack = withRole.Length == 0;
        if (fellBack && role == SiloRoles.Learner)
        {
            throw new NoSiloForRoleException(role);
        }
        if (role == SiloRoles.Learner && learnerRequiresAccelerator)
        {
            withRole = [.. withRole.Where(c => c.IsAccelerator)];
            if (withRole.Length == 0)
            {
                throw new NoSiloForRoleException(role,
                    "no active learner silo has an accelerator and Silo:LearnerRequiresAccelerator is set; start one with --Silo:Roles=learner --Silo:Device=cuda:0 (the run waits for it).");
            }
        }

        var pool = fellBack ? candidates.ToArray() : withRole;
        if (preferAccelerator && pool.Where(c => c.IsAccelerator).ToArray() is { Length: > 0 } accelerated)
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

    internal sealed record Candidate(SiloAddress Silo, IReadOnlyDictionary<string, string> Metadata)
    {
        public bool HasRole(string role) =>
            SiloMetadataKeys.ParseRoles(Metadata.GetValueOrDefault(SiloMetadataKeys.Roles)).Contains(role, StringComparer.Ordinal);

        public bool IsAccelerator => SiloMetadataKeys.IsAccelerator(Metadata.GetValueOrDefault(SiloMetadataKeys.Device));
    }
}

/// <summary>No active silo has the role (e.g. the learner's silo was lost and no other learner silo exists yet).</summary>
[GenerateSerializer]
public sealed class NoSiloForRoleException(string role, string? why = null)
    : OrleansException(why ?? $"no active silo has the role '{role}'; start one with --Silo:Roles={role} (the run waits for it).")
{
    [Id(0)] public string Role { get; } = role;
}
