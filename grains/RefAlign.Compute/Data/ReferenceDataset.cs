using System.Text.Json;
using System.Text.Json.Nodes;
using static RefAlign.Compute.Data.RecordFields;

namespace RefAlign.Compute.Data;

/// <summary>
/// Loads prompts with reference answers (RefAlign's training data) from JSON Lines or Parquet:
/// <list type="bullet">
/// <item><see cref="ReferenceLayout.Plain"/>: <c>{"prompt", "reference"}</c> plus an optional boolean <c>"harmful"</c>
/// (absent or null: false) and an optional verifiable <c>"answer"</c> (a string or a number); a record with an answer and
/// no reference uses the answer as its reference.</item>
/// <item><see cref="ReferenceLayout.Conqord"/>: the CONQORD confidence data (see below); <c>"chosen"</c> is the reference.</item>
/// <item><see cref="ReferenceLayout.PkuSafeRlhf"/>: PKU-SafeRLHF rows. The reference is the safe response (the
/// better one by <c>better_response_id</c> when both are safe); <see cref="ReferenceExample.Harmful"/> is true when
/// either response is unsafe. Rows with no safe response are left out with the reason "no safe response": that is a
/// property of the data, not a malformed row, so it is counted in <see cref="DataLoadResult{T}.Skipped"/> even when
/// <see cref="DataLoadOptions.SkipMalformed"/> is false.</item>
/// </list>
/// Empty prompts and empty references are malformed.
/// </summary>
/// <remarks>
/// CONQORD layout, as found in the CONQORD code (github.com/TaoShuchang/CONQORD, utils/data/raw_datasets.py,
/// <c>DahoasRmstaticDataset</c>, and the run_step1.sh / run_step2.sh scripts) which RefAlign's confidence runs reuse
/// (its SFT model was trained on shuchangtao/CONQORD_dataset, conqord_step1_data):
/// each record has <c>"prompt"</c>, <c>"chosen"</c> and <c>"rejected"</c> strings, read as <c>sample['prompt']</c>,
/// <c>sample['chosen']</c>, <c>sample['rejected']</c> (the Dahoas/rm-static layout the step-1 data was derived from,
/// "rm-static_conf_both"; rm-static also has a <c>"response"</c> field). In rm-static the prompt is the HH-style
/// dialogue <c>"\n\nHuman: …\n\nAssistant:"</c> and <c>"chosen"</c>/<c>"rejected"</c> hold the answer text only; in
/// the confidence variants the answers end with a verbalised confidence such as <c>"### Confidence: 0.9."</c>
/// (the CONQORD prompt templates use exactly that <c>### Confidence:</c> marker). The processed files themselves are
/// not in the code, so any prompt wording is accepted as is.
/// Step 1 (SFT) trains on <c>prompt + chosen</c>; step 2 (reward model) on <c>prompt + chosen</c> vs
/// <c>prompt + rejected</c>. Here the prompt and <c>"chosen"</c> are kept verbatim (confidence tail included; the
/// reward code parses and strips it), <c>"rejected"</c> is ignored, and Harmful is false.
/// </remarks>
public static class ReferenceDataset
{
    private const string KnownLayouts =
        "Plain {prompt, reference[, harmful][, answer]} or {prompt, answer}; Conqord {prompt, chosen[, rejected]}; " +
        "PkuSafeRlhf {prompt, response_0, response_1, is_response_0_safe, is_response_1_safe, better_response_id}";

    /// <summary>The skip reason for PKU rows whose two responses are both unsafe.</summary>
    public const string NoSafeResponse = "no safe response";

    public static DataLoadResult<ReferenceExample> Load(
        string path, ReferenceLayout layout = ReferenceLayout.Auto, DataLoadOptions? options = null) =>
        DatasetLoader.Load<ReferenceExample>(path, options, (first, location) =>
            Parser(layout == ReferenceLayout.Auto ? Detect(first, location) : layout));

    /// <summary>The record parser of a (resolved) layout; also what the SFT loader reads reference files with.</summary>
    internal static Func<JsonObject, string, RecordOutcome<ReferenceExample>> Parser(ReferenceLayout layout) => layout switch
    {
        ReferenceLayout.Plain => ParsePlain,
        ReferenceLayout.Conqord => ParseConqord,
        ReferenceLayout.PkuSafeRlhf => ParsePku,
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "Unknown reference layout."),
    };

    /// <summary>Picks the layout from the field names (and, for chosen, the JSON kind) of the first record.</summary>
    internal static ReferenceLayout Detect(JsonObject first, string location)
    {
        if (Has(first, "prompt"))
        {
            if (Has(first, "reference") || Has(first, "answer"))
            {
                return ReferenceLayout.Plain;
            }
            if (Has(first, "response_0") && Has(first, "response_1")
                && (Has(first, "is_response_0_safe") || Has(first, "is_response_1_safe")))
            {
                return ReferenceLayout.PkuSafeRlhf;
            }
            if (Has(first, "chosen") && first["chosen"]!.GetValueKind() == JsonValueKind.String)
            {
                return ReferenceLayout.Conqord;
            }
        }
        throw DatasetLoader.UnknownLayout("reference", first, location, KnownLayouts);
    }

    private static RecordOutcome<ReferenceExample> ParsePlain(JsonObject record, string location)
    {
        var answer = Has(record, "answer") ? ScalarText(record, "answer", location) : null;
        return RecordOutcome<ReferenceExample>.Accept(new ReferenceExample(
            NonEmptyString(record, "prompt", location),
            answer is not null && !Has(record, "reference") ? answer : NonEmptyString(record, "reference", location),
            OptionalBool(record, "harmful", location, fallback: false),
            location,
            answer));
    }

    private static RecordOutcome<ReferenceExample> ParseConqord(JsonObject record, string location) =>
        RecordOutcome<ReferenceExample>.Accept(new ReferenceExample(
            NonEmptyString(record, "prompt", location),
            NonEmptyString(record, "chosen", location),
            Harmful: false,
            location));

    private static RecordOutcome<ReferenceExample> ParsePku(JsonObject record, string location)
    {
        var prompt = NonEmptyString(record, "prompt", location);
        string[] responses = [String(record, "response_0", location), String(record, "response_1", location)];
        bool[] safe = [Bool(record, "is_response_0_safe", location), Bool(record, "is_response_1_safe", location)];
        var better = ZeroOrOne(record, "better_response_id", location);

        int pick;
        if (safe[0] && safe[1])
        {
            pick = better;
        }
        else if (safe[0] || safe[1])
        {
            pick = safe[0] ? 0 : 1;
        }
        else
        {
            return RecordOutcome<ReferenceExample>.Skip(NoSafeResponse);
        }
        if (string.IsNullOrWhiteSpace(responses[pick]))
        {
            throw Error(location, $"response_{pick}", "is empty (it is the safe response chosen as the reference)");
        }
        return RecordOutcome<ReferenceExample>.Accept(
            new ReferenceExample(prompt, responses[pick], Harmful: !(safe[0] && safe[1]), location));
    }
}
