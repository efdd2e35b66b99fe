namespace RefAlign.Contracts.Messages;

/// <summary>
/// One shard of a step's prompts for a rollout generator. A generator holding a version outside
/// [<see cref="MinVersion"/>, <see cref="MaxVersion"/>] fetches the learner's current weights before sampling: older
/// than the run allows, or newer than the learner (after the learner restored an earlier checkpoint).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record GenerateRequest(
    [property: Id(0)] string RunId,
    [property: Id(1)] int Step,
    [property: Id(2)] long MinVersion,
    [property: Id(3)] IReadOnlyList<PromptMessage> Prompts,
    [property: Id(4)] IReadOnlyList<int> Positions,
    [property: Id(5)] long MaxVersion = long.MaxValue);

/// <summary>
/// A shard's samples, the policy version that produced them, the weight transfer this request needed (bytes and
/// seconds; 0 when the replica was current) and the silo the shard ran on.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record GenerateReply(
    [property: Id(0)] IReadOnlyList<RolloutMessage> Rollouts,
    [property: Id(1)] long WeightVersion,
    [property: Id(2)] long SyncBytes = 0,
    [property: Id(3)] double SyncSeconds = 0,
    [property: Id(4)] string Silo = "");
