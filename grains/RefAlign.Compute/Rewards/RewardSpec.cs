using System.Text.Json.Serialization;

namespace RefAlign.Compute.Rewards;

/// <summary>Which scorer a reward is (docs/algorithms.md §9).</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<RewardKind>))]
public enum RewardKind
{
    /// <summary>BERTScore F1 against the reference (§4), with <c>refalign.reward_model</c>, <c>bertscore_layers</c>, <c>idf</c>.</summary>
    [JsonStringEnumMemberName("bertscore")] BertScore,

    /// <summary>A verifiable answer: the response's extracted answer against the data's <c>answer</c> field.</summary>
    [JsonStringEnumMemberName("rule")] Rule,

    /// <summary>An HF <c>…ForSequenceClassification</c> folder scoring the templated prompt and response.</summary>
    [JsonStringEnumMemberName("reward_model")] RewardModel,

    /// <summary>A <c>RewardService</c> served elsewhere (gRPC, TLS, a key).</summary>
    [JsonStringEnumMemberName("remote")] Remote,
}

/// <summary>How a rule reward compares the extracted answer with the data's.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<RuleMatch>))]
public enum RuleMatch
{
    /// <summary>Both parse as numbers (commas dropped) within <see cref="RewardSpec.Tolerance"/>.</summary>
    [JsonStringEnumMemberName("numeric")] Numeric,

    /// <summary>The same text after trimming white space.</summary>
    [JsonStringEnumMemberName("exact")] Exact,
}

/// <summary>
/// One reward of a run (<c>refalign.rewards[i]</c>): its kind, its weight in the total, and the settings of its kind.
/// A field that belongs to another kind is refused by the validator, so a typo'd kind never passes silently.
/// </summary>
public sealed record RewardSpec
{
    public RewardKind Kind { get; init; } = RewardKind.BertScore;

    /// <summary>Weight in the total <c>Σ w_k s_k / Σ w_k</c>; the weights must not sum to 0.</summary>
    public double Weight { get; init; } = 1.0;

    // ---- reward_model ----

    /// <summary>The HF sequence-classification folder (reward_model).</summary>
    public string? Model { get; init; }

    // ---- rule ----

    /// <summary>Regular expression whose last match (its group 1 when it has one) is the answer; default: the last number.</summary>
    public string? Pattern { get; init; }

    public RuleMatch? Match { get; init; }

    /// <summary>Numeric match: |extracted − answer| ≤ tolerance (default 1e-6).</summary>
    public double? Tolerance { get; init; }

    /// <summary>Added to the score when the response has the expected format (default 0).</summary>
    public double? FormatBonus { get; init; }

    /// <summary>The format that earns the bonus (a regular expression the whole response is searched for); default: the answer pattern matched.</summary>
    public string? FormatPattern { get; init; }

    // ---- remote ----

    /// <summary>The service's address: <c>https://host:port</c>; plain <c>http://</c> only on a loopback address.</summary>
    public string? Url { get; init; }

    /// <summary>Name of the environment variable (on the silo, or the trainer's machine) that holds the service's key.</summary>
    public string? ApiKeyEnv { get; init; }

    /// <summary>A PEM file with the CA that signed the service's certificate (a private CA); default: the system's.</summary>
    public string? CaCertificate { get; init; }

    /// <summary>Deadline of one call (default 30 s).</summary>
    public double? TimeoutSeconds { get; init; }

    /// <summary>Calls in flight to this service at once, per run (default 4).</summary>
    public int? MaxConcurrency { get; init; }

    /// <summary>Tries after the first failed one, per call (default 2).</summary>
    public int? Retries { get; init; }

    /// <summary>Texts per call (default 64).</summary>
    public int? BatchSize { get; init; }

    /// <summary>The range a score must lie in (default [−1e6, 1e6]); a score outside fails the call.</summary>
    public double? MinScore { get; init; }

    public double? MaxScore { get; init; }

    public const string DefaultPattern = @"-?\d+(?:\.\d+)?";
    public const double DefaultTolerance = 1e-6;
    public const double DefaultTimeoutSeconds = 30;
    public const int DefaultMaxConcurrency = 4;
    public const int DefaultRetries = 2;
    public const int DefaultBatchSize = 64;
    public const double DefaultMinScore = -1e6;
    public const double DefaultMaxScore = 1e6;

    /// <summary>The metric name of this reward: <c>reward/&lt;kind&gt;</c>, with its index when the kind repeats.</summary>
    public static string MetricName(IReadOnlyList<RewardSpec> rewards, int i)
    {
        var name = SnakeCaseEnumConverter<RewardKind>.NameOf(rewards[i].Kind);
        return rewards.Count(r => r.Kind == rewards[i].Kind) > 1 ? $"reward/{name}/{i}" : $"reward/{name}";
    }

    /// <summary>
    /// The weighted total of one sample's scores. A single reward is its own score, exactly (BERTScore alone keeps its
    /// numbers whatever its weight).
    /// </summary>
    public static double Total(IReadOnlyList<RewardSpec> rewards, IReadOnlyList<double> scores)
    {
        if (rewards.Count == 1) return scores[0];
        double sum = 0, weights = 0;
        for (var k = 0; k < rewards.Count; k++)
        {
            sum += rewards[k].Weight * scores[k];
            weights += rewards[k].Weight;
        }
        return sum / weights;
    }
}
