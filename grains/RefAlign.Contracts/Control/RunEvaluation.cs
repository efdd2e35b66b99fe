namespace RefAlign.Contracts.Control;

/// <summary>
/// What <c>run eval</c> asks of a finished run: the models to evaluate, each <c>base</c> (the run's starting policy),
/// <c>latest</c> (its latest checkpoint) or <c>step-N</c>, the first being the baseline of win rates; and the settings
/// of <c>eval.json</c> (null: the run's own).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record RunEvalRequest(
    [property: Id(0)] string RunId,
    [property: Id(1)] IReadOnlyList<string> Models,
    [property: Id(2)] int? Examples = null,
    [property: Id(3)] int? NumSamples = null,
    [property: Id(4)] long Seed = 1,
    [property: Id(5)] double CorrectThreshold = 0.9,
    [property: Id(6)] int Bootstrap = 1000);

/// <summary>One sampled answer as evaluated (the fields of a <c>samples.jsonl</c> line).</summary>
[GenerateSerializer, Immutable]
public sealed record RunEvalSample(
    [property: Id(0)] int PromptId,
    [property: Id(1)] int Sample,
    [property: Id(2)] bool Harmful,
    [property: Id(3)] string Answer,
    [property: Id(4)] double? Confidence,
    [property: Id(5)] double F1,
    [property: Id(6)] bool Correct,
    [property: Id(7)] double Reward,
    [property: Id(8)] int Length);

/// <summary>One model's metrics and samples; <see cref="Path"/> is the folder the silos read it from.</summary>
[GenerateSerializer, Immutable]
public sealed record RunModelEvaluation(
    [property: Id(0)] string Model,
    [property: Id(1)] string Path,
    [property: Id(2)] IReadOnlyDictionary<string, double> Metrics,
    [property: Id(3)] IReadOnlyList<RunEvalSample> Samples,
    [property: Id(4)] double? F1Low,
    [property: Id(5)] double? F1High,
    [property: Id(6)] IReadOnlyList<string> Notes);

/// <summary>Model B against model A on the same prompts and sampling keys, with the bootstrap interval of the win rate.</summary>
[GenerateSerializer, Immutable]
public sealed record RunSideBySide(
    [property: Id(0)] string ModelA,
    [property: Id(1)] string ModelB,
    [property: Id(2)] double WinRate,
    [property: Id(3)] double Low,
    [property: Id(4)] double High,
    [property: Id(5)] int Wins,
    [property: Id(6)] int Ties,
    [property: Id(7)] int Losses);

[GenerateSerializer, Immutable]
public sealed record RunEvalResult(
    [property: Id(0)] IReadOnlyList<RunModelEvaluation> Models,
    [property: Id(1)] IReadOnlyList<RunSideBySide> SideBySide);

/// <summary>
/// Where an evaluation stands: model <see cref="ModelIndex"/> of <see cref="Models"/> has <see cref="Done"/> of
/// <see cref="Total"/> examples evaluated; the last update carries the <see cref="Result"/> (or the <see cref="Error"/>).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record RunEvalProgress(
    [property: Id(0)] string Model,
    [property: Id(1)] int ModelIndex,
    [property: Id(2)] int Models,
    [property: Id(3)] int Done,
    [property: Id(4)] int Total,
    [property: Id(5)] RunEvalResult? Result = null,
    [property: Id(6)] string? Error = null)
{
    public bool Finished => Result is not null || Error is not null;
}
