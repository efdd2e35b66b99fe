using Orleans.Metadata;
using Orleans.Placement;

namespace RefAlign.Runtime;

/// <summary>
/// Places an activation on a silo whose metadata lists <see cref="Role"/>; optionally prefers silos with an
/// accelerator device. The director is <see cref="RolePlacementDirector"/>; with no silo of the role it
/// falls back to any compatible silo and logs a warning.
/// </summary>
/// <remarks>
/// Orleans resolves one strategy instance per grain type from DI (registered transient) and calls
/// <see cref="Initialize"/> with that type's properties, so the role travels as a grain-type property, not as state.
/// </remarks>
[GenerateSerializer, Immutable, SuppressReferenceTracking]
public sealed class RolePlacement : PlacementStrategy
{
    /// <summary>Grain-type property that carries the required role.</summary>
    public const string RoleProperty = "refalign-placement-role";

    /// <summary>Grain-type property: "true" when accelerator silos are preferred.</summary>
    public const string PreferAcceleratorProperty = "refalign-placement-prefer-accelerator";

    public RolePlacement()
    {
    }

    public RolePlacement(string role, bool preferAccelerator)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(role);
        Role = role.Trim().ToLowerInvariant();
        PreferAccelerator = preferAccelerator;
    }

    [Id(0)] public string Role { get; private set; } = "";

    [Id(1)] public bool PreferAccelerator { get; private set; }

    public override void Initialize(GrainProperties properties)
    {
        Role = properties.Properties.TryGetValue(RoleProperty, out var role) ? role : "";
        PreferAccelerator = properties.Properties.TryGetValue(PreferAcceleratorProperty, out var prefer)
            && bool.TryParse(prefer, out var value) && value;
    }

    public override void PopulateGrainProperties(
        IServiceProvider services, Type grainClass, GrainType grainType, Dictionary<string, string> properties)
    {
        base.PopulateGrainProperties(services, grainClass, grainType, properties);
        properties[RoleProperty] = Role;
        properties[PreferAcceleratorProperty] = PreferAccelerator ? "true" : "false";
    }

    public override string ToString() => $"RolePlacement({Role}{(PreferAccelerator ? ", prefer accelerator" : "")})";
}

/// <summary>
/// Puts a grain class on silos with the given role, e.g. <c>[RolePlacement(SiloRoles.Learner)]</c>. By default only the
/// learner role prefers a silo whose device is not the CPU; the two-argument form says so explicitly.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class RolePlacementAttribute : PlacementAttribute
{
    public RolePlacementAttribute(string role)
        : this(role, role.Trim().Equals(SiloRoles.Learner, StringComparison.OrdinalIgnoreCase))
    {
    }

    public RolePlacementAttribute(string role, bool preferAccelerator)
        : base(new RolePlacement(role, preferAccelerator))
    {
    }

    public string Role => ((RolePlacement)PlacementStrategy).Role;
}
