using System.Text.Json.Serialization;
namespace RefAlign.Compute.Data;

/// <summary>
/// One preference pair: <paramref name="Chosen"/> and <paramref name="Rejected"/> are completions of
/// <paramref name="Prompt"/> (the prompt text is not repeated in them). <paramref name="Source"/> says where the
/// pair came from: <c>file:line</c> for JSON Lines, <c>file:row N</c> (1-based) for Parquet.
/// </summary>
public sealed record PreferenceExample(string Prompt, string Chosen, string Rejected, string Source);

/// <summary>
/// One prompt with its reference answer. <paramref name="Harmful"/> marks prompts whose reference is a safe
/// answer to a harmful request (the safety scenario weights their advantage). For CONQORD data the reference
/// keeps its <c>### Confidence: x</c> tail verbatim; the reward code strips it. <paramref name="Answer"/> is a verifiable
/// answer (the plain layout's optional <c>"answer"</c>, a string or a number) that rule rewards check responses against.
/// </summary>
public sealed record ReferenceExample(string Prompt, string Reference, bool Harmful, string Source, string? Answer = null);

/// <summary>A data file's layout as run configs name it; <see cref="Auto"/> detects it from the first record.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<DataLayout>))]
public enum DataLayout
{
    [JsonStringEnumMemberName("auto")] Auto,
    [JsonStringEnumMemberName("plain")] Plain,
    [JsonStringEnumMemberName("hh-rlhf")] HhRlhf,
    [JsonStringEnumMemberName("ultrafeedback")] UltraFeedback,
    [JsonStringEnumMemberName("pku-saferlhf")] PkuSafeRlhf,
    [JsonStringEnumMemberName("conqord")] Conqord,
}

/// <summary>Which PKU-SafeRLHF label makes a response the chosen one.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<PkuPreference>))]
public enum PkuPreference
{
    [JsonStringEnumMemberName("better")] Better,
    [JsonStringEnumMemberName("safer")] Safer,
}

/// <summary>Field layouts of preference data sets. <see cref="Auto"/> picks one from the first record's fields.</summary>
public enum PreferenceLayout
{
    /// <summary>Detect from the fields of the first record.</summary>
    Auto,

    /// <summary><c>{"prompt", "chosen", "rejected"}</c>, all strings.</summary>
    Plain,

    /// <summary>Anthropic/hh-rlhf: <c>{"chosen", "rejected"}</c> full transcripts; the prompt is the shared prefix up to the last Assistant turn.</summary>
    HhRlhf,

    /// <summary>HuggingFaceH4/ultrafeedback_binarized: <c>"prompt"</c> plus <c>"chosen"</c>/<c>"rejected"</c> lists of <c>{"content","role"}</c> messages.</summary>
    UltraFeedback,

    /// <summary>PKU-Alignment/PKU-SafeRLHF: two responses with <c>better_response_id</c> / <c>safer_response_id</c>.</summary>
    PkuSafeRlhf,
}

/// <summary>Field layouts of reference-answer data sets. <see cref="Auto"/> picks one from the first record's fields.</summary>
public enum ReferenceLayout
{
    /// <summary>Detect from the fields of the first record.</summary>
    Auto,

    /// <summary><c>{"prompt", "reference"}</c> plus an optional boolean <c>"harmful"</c> and <c>"answer"</c>; an <c>"answer"</c> alone is the reference too.</summary>
    Plain,

    /// <summary>CONQORD step data: <c>{"prompt", "chosen"[, "rejected"]}</c>; <c>chosen</c> is the reference answer.</summary>
    Conqord,

    /// <summary>PKU-SafeRLHF used as a reference set: the (better) safe response is the reference.</summary>
    PkuSafeRlhf,
}

/// <summary>How a data set file is read.</summary>
public sealed record DataLoadOptions
{
    /// <summary>
    /// False (the default): the first malformed line or row throws <see cref="ModelFormatException"/>.
    /// True: malformed records are skipped and counted in <see cref="DataLoadResult{T}.Skipped"/> with their reason.
    /// </summary>
    public bool SkipMalformed { get; init; }

    /// <summary>PKU-SafeRLHF preference axis: better (<c>better_response_id</c>) or safer (<c>safer_response_id</c>).</summary>
    public PkuPreference PkuPreference { get; init; } = PkuPreference.Better;

    /// <summary>Stop after this many examples have been accepted (null: read everything).</summary>
    public int? Limit { get; init; }
}

/// <summary>
/// The examples read, plus the records left out: malformed ones (only with <see cref="DataLoadOptions.SkipMalformed"/>)
/// and records that are valid but unusable for the requested purpose (e.g. PKU prompts with no safe response).
/// Every reason starts with the record's <c>file:line</c> / <c>file:row N</c>.
/// </summary>
public sealed record DataLoadResult<T>(IReadOnlyList<T> Examples, int Skipped, IReadOnlyList<string> SkippedReasons);
