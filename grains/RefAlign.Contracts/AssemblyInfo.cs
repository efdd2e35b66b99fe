// Grain interfaces and the immutable messages that cross silos live here; Orleans generates their serializers.
[assembly: GenerateCodeForDeclaringAssembly(typeof(RefAlign.Contracts.AssemblyMarker))]

namespace RefAlign.Contracts;

/// <summary>Anchor type for assembly-level attributes.</summary>
public sealed class AssemblyMarker;
