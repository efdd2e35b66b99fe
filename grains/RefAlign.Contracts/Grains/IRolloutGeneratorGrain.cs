using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// A policy replica (key: "run/shard") that samples K responses per prompt for its shard. It refuses to sample with a
/// version older than the request allows: it first fetches the learner's newer weights, in chunks.
/// </summary>
public interface IRolloutGeneratorGrain : IGrainWithStringKey
{
    [ResponseTimeout("00:15:00")]
    Task Initialize(string configJson);

    [ResponseTimeout("00:30:00")]
    Task<GenerateReply> Generate(GenerateRequest request);

    Task<long> WeightVersion();
}
