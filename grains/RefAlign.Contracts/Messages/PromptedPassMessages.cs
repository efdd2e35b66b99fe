namespace RefAlign.Contracts.Messages;

/// <summary>
/// Sr-*'s prompted no-grad pass for one learner step, offloaded to a policy replica: the step's pairs in the learner's
/// order, to be scored at exactly weight version <see cref="WeightVersion"/> (the one the learner's step starts from).
/// <see cref="Manifest"/>, fetched before the step, lets the replica pull that version while the learner is busy (the
/// learner answers no manifest request during a step; its snapshot stream and chunks stay available).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record PromptedPassRequest(
    [property: Id(0)] string RunId,
    [property: Id(1)] int Step,
    [property: Id(2)] long WeightVersion,
    [property: Id(3)] IReadOnlyList<PreferencePairMessage> Pairs,
    [property: Id(4)] WeightsManifest? Manifest = null);

/// <summary>
/// The policy's prompted log-probs per pair (the run's reduction; float32 values carried as doubles, so exact), the
/// version that produced them, the replica's compute seconds and the silo it ran on.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record PromptedPassReply(
    [property: Id(0)] int Step,
    [property: Id(1)] long WeightVersion,
    [property: Id(2)] double[] Chosen,
    [property: Id(3)] double[] Rejected,
    [property: Id(4)] double Seconds = 0,
    [property: Id(5)] string Silo = "");
