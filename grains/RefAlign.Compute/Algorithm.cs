using System.Text.Json.Serialization;

namespace RefAlign.Compute;

/// <summary>The training algorithm of a run.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<Algorithm>))]
public enum Algorithm
{
    [JsonStringEnumMemberName("refalign")] RefAlign,
    [JsonStringEnumMemberName("dpo")] Dpo,
    [JsonStringEnumMemberName("cdpo")] CDpo,
    [JsonStringEnumMemberName("ipo")] Ipo,
    [JsonStringEnumMemberName("sr-dpo")] SrDpo,
    [JsonStringEnumMemberName("sr-ipo")] SrIpo,

    /// <summary>Supervised fine-tuning: token cross-entropy on completions, the papers' first stage.</summary>
    [JsonStringEnumMemberName("sft")] Sft,

    /// <summary>GRPO: clipped importance ratio against the behaviour log-probs, group-normalised advantages (docs/algorithms.md §7).</summary>
    [JsonStringEnumMemberName("grpo")] Grpo,

    /// <summary>RLOO: GRPO's clipped objective with a leave-one-out baseline (docs/algorithms.md §7).</summary>
    [JsonStringEnumMemberName("rloo")] Rloo,

    /// <summary>REINFORCE++: GRPO's clipped objective with batch-normalised advantages (docs/algorithms.md §7).</summary>
    [JsonStringEnumMemberName("reinforce_pp")] ReinforcePp,
}
