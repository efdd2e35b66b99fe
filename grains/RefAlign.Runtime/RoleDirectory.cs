using Orleans.Runtime.MembershipService.SiloMetadata;

namespace RefAlign.Runtime;

/// <summary>The active silos of each role, in a stable order (from membership and the silos' metadata).</summary>
public sealed class RoleDirectory(IClusterMembershipService membership, ISiloMetadataCache metadata)
{
    public IReadOnlyList<SiloAddress> Active(string role) =>
        [.. membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active)
            .Select(m => m.SiloAddress)
            .Where(s => SiloMetadataKeys.ParseRoles(metadata.GetSiloMetadata(s).Metadata.GetValueOrDefault(SiloMetadataKeys.Roles)).Contains(role, StringComparer.Ordinal))
            .OrderBy(s => s.ToParsableString(), StringComparer.Ordinal)];

    /// <summary>The memory <paramref name="silo"/> published (0 when unknown).</summary>
    public long MemoryOf(SiloAddress silo) =>
        long.TryParse(metadata.GetSiloMetadata(silo).Metadata.GetValueOrDefault(SiloMetadataKeys.MemoryBytes), out var bytes) ? bytes : 0;

    /// <summary>True when <paramref name="silo"/> published a device other than the CPU.</summary>
    public bool IsAccelerator(SiloAddress silo) =>
        SiloMetadataKeys.IsAccelerator(metadata.GetSiloMetadata(silo).Metadata.GetValueOrDefault(SiloMetadataKeys.Device));

    /// <summary>True while <paramref name="silo"/> is an active member.</summary>
    public bool IsActive(SiloAddress silo) =>
        membership.CurrentSnapshot.Members.TryGetValue(silo, out var m) && m.Status == SiloStatus.Active;
}
