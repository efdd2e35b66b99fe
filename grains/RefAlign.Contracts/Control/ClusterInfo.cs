namespace RefAlign.Contracts.Control;

/// <summary>One silo as <c>GetCluster</c> shows it.</summary>
[GenerateSerializer, Immutable]
public sealed record SiloInfo(
    [property: Id(0)] string Address,
    [property: Id(1)] string Name,
    [property: Id(2)] IReadOnlyList<string> Roles,
    [property: Id(3)] string Device,
    [property: Id(4)] string Status,
    [property: Id(5)] int ActiveGrains,
    [property: Id(6)] string Libtorch = "");

/// <summary>A rollout generator and the policy weight version it holds.</summary>
[GenerateSerializer, Immutable]
public sealed record GeneratorInfo(
    [property: Id(0)] string GrainId,
    [property: Id(1)] string RunId,
    [property: Id(2)] long WeightVersion,
    [property: Id(3)] string Silo);

/// <summary>Where a grain of a running run lives: <see cref="Kind"/> is run, learner, generator or reference.</summary>
[GenerateSerializer, Immutable]
public sealed record PlacementInfo(
    [property: Id(0)] string Kind,
    [property: Id(1)] string GrainKey,
    [property: Id(2)] string RunId,
    [property: Id(3)] string Silo,
    [property: Id(4)] long WeightVersion);

[GenerateSerializer, Immutable]
public sealed record ClusterInfo(
    [property: Id(0)] IReadOnlyList<SiloInfo> Silos,
    [property: Id(1)] IReadOnlyList<GeneratorInfo> Generators,
    [property: Id(2)] IReadOnlyList<PlacementInfo> Placements);
