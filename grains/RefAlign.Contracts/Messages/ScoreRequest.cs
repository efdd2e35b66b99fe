namespace RefAlign.Contracts.Messages;

/// <summary>BERTScore work: F1 of each candidate against its reference with one encoder folder.</summary>
[GenerateSerializer, Immutable]
public sealed record ScoreRequest(
    [property: Id(0)] string RewardModel,
    [property: Id(1)] int? Layers,
    [property: Id(2)] bool Idf,
    [property: Id(3)] IReadOnlyList<string>? IdfReferences,
    [property: Id(4)] IReadOnlyList<string> Candidates,
    [property: Id(5)] IReadOnlyList<string> References);
