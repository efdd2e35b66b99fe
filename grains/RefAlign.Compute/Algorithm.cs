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
}
