namespace RefAlign.Compute.BertScore;

/// <summary>How a candidate with several references is scored.</summary>
public enum MultiReferenceMode
{
    /// <summary>The reference with the best F, and that reference's P and R (docs/algorithms.md §4).</summary>
    BestF,

    /// <summary>The maximum of P, R and F taken separately, as the <c>bert_score</c> package does.</summary>
    Elementwise,
}

/// <summary>Scoring switches, named as <c>bert_score</c> names them.</summary>
public sealed record BertScoreOptions
{
    /// <summary>Weight tokens by idf over the reference sentences (special tokens weigh 0 either way).</summary>
    public bool Idf { get; init; }

    /// <summary>
    /// The corpus idf is computed over; null = the references being scored (bert_score's behaviour). A reward model
    /// sets it to the whole reference set so a sentence's reward does not depend on its batch.
    /// </summary>
    public IReadOnlyList<string>? IdfReferences { get; init; }

    /// <summary>Sentences embedded per encoder pass (sorted by length, so padding stays small).</summary>
    public int BatchSize { get; init; } = 64;

    public MultiReferenceMode MultiReference { get; init; } = MultiReferenceMode.BestF;

    /// <summary>Baseline for rescaling <c>(x − b)/(1 − b)</c>; null = raw scores.</summary>
    public BaselineRescale? Baseline { get; init; }

    public void Validate()
    {
        if (BatchSize < 1) throw new ArgumentException($"batch_size must be ≥ 1 (got {BatchSize}).", nameof(BatchSize));
    }
}

/// <summary>Precision, recall and F1 of one candidate.</summary>
public sealed record BertScoreResult(double Precision, double Recall, double F1);
