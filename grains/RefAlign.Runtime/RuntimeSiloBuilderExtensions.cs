using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace RefAlign.Runtime;

/// <summary>What every silo hosting RefAlign grains needs from the runtime: its roles and device as silo metadata, and
/// the <see cref="RolePlacement"/> director that reads them.</summary>
public static class RuntimeSiloBuilderExtensions
{
    public static ISiloBuilder AddRefAlignRuntime(this ISiloBuilder silo, IReadOnlyList<string> roles, string device, int computeThreads,
        bool learnerRequiresAccelerator = false)
    {
        silo.UseSiloMetadata(Metadata(roles, device, computeThreads));
        silo.Services.AddSingleton(new LearnerPlacementOptions(learnerRequiresAccelerator));
        // Transient: Orleans initializes one strategy instance per grain type with that type's role.
        silo.Services.AddPlacementDirector<RolePlacement, RolePlacementDirector>(ServiceLifetime.Transient);
        silo.Services.AddSingleton<RoleDirectory>();
        silo.Services.AddSingleton<SiloDrain>();
        return silo;
    }

    public static Dictionary<string, string> Metadata(IReadOnlyList<string> roles, string device, int computeThreads) => new()
    {
        [SiloMetadataKeys.Roles] = string.Join(',', roles),
        [SiloMetadataKeys.Device] = device,
        [SiloMetadataKeys.Libtorch] = Compute.ComputeDevices.Build,
        [SiloMetadataKeys.ComputeThreads] = computeThreads.ToString(CultureInfo.InvariantCulture),
        // The GC's view of available memory honours container limits.
        [SiloMetadataKeys.MemoryBytes] = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes.ToString(CultureInfo.InvariantCulture),
    };
}

/// <summary>
/// Where learners may go (<c>Silo:LearnerRequiresAccelerator</c>; set it alike on every silo): with
/// <paramref name="RequireAccelerator"/> only on a learner silo with a GPU device, never on a CPU one.
/// </summary>
public sealed record LearnerPlacementOptions(bool RequireAccelerator);
