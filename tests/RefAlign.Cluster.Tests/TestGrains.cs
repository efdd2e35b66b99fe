using Orleans.Runtime;
using RefAlign.Contracts.Grains;
using RefAlign.Runtime;
using RefAlign.Compute.Formats;
using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>What a weight fetch on another silo received: where it ran, the chunking, and the digest of the bytes.</summary>
[GenerateSerializer, Immutable]
public sealed record WeightFetch(
    [property: Id(0)] string Silo,
    [property: Id(1)] long Version,
    [property: Id(2)] int ChunkCount,
    [property: Id(3)] int ChunkBytes,
    [property: Id(4)] long TotalBytes,
    [property: Id(5)] IReadOnlyList<int> ChunkLengths,
    [property: Id(6)] string Digest,
    [property: Id(7)] IReadOnlyList<string> EntryNames);

/// <summary>Pulls a learner's published weights the way a rollout generator does, from a generator silo.</summary>
public interface IWeightFetchProbeGrain : IGrainWithStringKey
{
    Task<WeightFetch> FetchAsync(string runId);
}

[RolePlacement(SiloRoles.Generator)]
public sealed class WeightFetchProbeGrain(ILocalSiloDetails silo) : Grain, IWeightFetchProbeGrain
{
    public async Task<WeightFetch> FetchAsync(string runId)
    {
        var learner = GrainFactory.GetGrain<ILearnerGrain>(runId);
        var manifest = await learner.GetWeights(-1);
        var chunks = new List<byte[]>(manifest.ChunkCount);
        for (var i = 0; i < manifest.ChunkCount; i++) chunks.Add(await learner.GetWeightsChunk(manifest.Version, i));
        var snapshot = WeightSnapshot.FromChunks([.. manifest.Entries.Select(e => e.ToCompute())], chunks);
        return new WeightFetch(silo.SiloAddress.ToString(), manifest.Version, manifest.ChunkCount, manifest.ChunkBytes, manifest.TotalBytes,
            [.. chunks.Select(c => c.Length)], snapshot.Digest(), [.. snapshot.Entries.Select(e => e.Name)]);
    }
}

/// <summary>Throws what the runtime throws when its own call times out (Polly's exception, which has no codec).</summary>
public interface IRuntimeTimeoutProbeGrain : IGrainWithIntegerKey
{
    Task Fail();
}

public sealed class RuntimeTimeoutProbeGrain : Grain, IRuntimeTimeoutProbeGrain
{
    public Task Fail() => throw new Polly.Timeout.TimeoutRejectedException();
}
