namespace RefAlign.Contracts.Messages;

/// <summary>What a scorer silo scores and with what.</summary>
public enum RewardScorerKind
{
    /// <summary>BERTScore F1 of each response against its reference, with the encoder folder <see cref="RewardScoreRequest.Model"/>.</summary>
    BertScore,

    /// <summary>A sequence-classification reward model's score of each (prompt, response).</summary>
    RewardModel,
}

/// <summary>Scoring work for one scorer silo: one score per sample, in order.</summary>
[GenerateSerializer, Immutable]
public sealed record RewardScoreRequest(
    [property: Id(0)] RewardScorerKind Kind,
    [property: Id(1)] string Model,
    [property: Id(2)] int? Layers,
    [property: Id(3)] bool Idf,
    [property: Id(4)] IReadOnlyList<string>? IdfReferences,
    [property: Id(5)] IReadOnlyList<string> Prompts,
    [property: Id(6)] IReadOnlyList<string> Responses,
    [property: Id(7)] IReadOnlyList<string> References);
