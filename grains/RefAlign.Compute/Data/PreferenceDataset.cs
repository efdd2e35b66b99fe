using System.Text.Json;
using System.Text.Json.Nodes;
using static RefAlign.Compute.Data.RecordFields;

namespace RefAlign.Compute.Data;

/// <summary>
/// Loads preference pairs (prompt, chosen, rejected) from JSON Lines or Parquet in the layouts of the public
/// preference data sets:
/// <list type="bullet">
/// <item><see cref="PreferenceLayout.Plain"/>: <c>{"prompt", "chosen", "rejected"}</c> strings.</item>
/// <item><see cref="PreferenceLayout.HhRlhf"/> (Anthropic/hh-rlhf): <c>{"chosen", "rejected"}</c> full transcripts
/// <c>"\n\nHuman: …\n\nAssistant: …"</c>. The prompt is the chosen transcript up to and including its last
/// <c>"\n\nAssistant:"</c>; the responses are the rest of each transcript, verbatim (usually with a leading
/// space), as in the DPO reference code. The rejected transcript must start with that same prompt.</item>
/// <item><see cref="PreferenceLayout.UltraFeedback"/> (HuggingFaceH4/ultrafeedback_binarized): <c>"prompt"</c>,
/// and <c>"chosen"</c>/<c>"rejected"</c> lists of <c>{"content","role"}</c> messages; each response is the content
/// of the list's last <c>assistant</c> message. Other fields (prompt_id, messages, score_*) are ignored.</item>
/// <item><see cref="PreferenceLayout.PkuSafeRlhf"/> (PKU-Alignment/PKU-SafeRLHF): <c>"prompt"</c>, <c>"response_0"</c>,
/// <c>"response_1"</c> and <c>"better_response_id"</c> or <c>"safer_response_id"</c>, chosen by
/// <see cref="DataLoadOptions.PkuPreference"/>.</item>
/// </list>
/// Empty prompts are malformed; empty responses are allowed (the real data sets contain a few).
/// </summary>
public static class PreferenceDataset
{
    private const string AssistantTurn = "\n\nAssistant:";

    private const string KnownLayouts =
        "Plain {prompt, chosen, rejected}; HhRlhf {chosen, rejected} transcripts; " +
        "UltraFeedback {prompt, chosen: [{content, role}], rejected: [{content, role}]}; " +
        "PkuSafeRlhf {prompt, response_0, response_1, better_response_id, safer_response_id}";

    public static DataLoadResult<PreferenceExample> Load(
        string path, PreferenceLayout layout = PreferenceLayout.Auto, DataLoadOptions? options = null)
    {
        var useSafer = (options ?? new DataLoadOptions()).PkuPreference == PkuPreference.Safer;
        return DatasetLoader.Load<PreferenceExample>(path, options, (first, location) =>
            Parser(layout == PreferenceLayout.Auto ? Detect(first, location) : layout, useSafer));
    }

    /// <summary>The record parser of a (resolved) layout; also what the SFT loader reads preference files with.</summary>
    internal static Func<JsonObject, string, RecordOutcome<PreferenceExample>> Parser(PreferenceLayout layout, bool useSafer) => layout switch
    {
        PreferenceLayout.Plain => ParsePlain,
        PreferenceLayout.HhRlhf => ParseHhRlhf,
        PreferenceLayout.UltraFeedback => ParseUltraFeedback,
        PreferenceLayout.PkuSafeRlhf => (record, loc) => ParsePku(record, loc, useSafer),
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "Unknown preference layout."),
    };

    /// <summary>Picks the layout from the field names (and, for chosen, the JSON kind) of the first record.</summary>
    internal static PreferenceLayout Detect(JsonObject first, string location)
    {
        if (Has(first, "prompt") && Has(first, "response_0") && Has(first, "response_1")
            && (Has(first, "better_response_id") || Has(first, "safer_response_id")))
        {
            return PreferenceLayout.PkuSafeRlhf;
        }
        if (Has(first, "chosen") && Has(first, "rejected"))
        {
            if (!first.ContainsKey("prompt"))
            {
                return PreferenceLayout.HhRlhf;
            }
            return first["chosen"]!.GetValueKind() == JsonValueKind.Array
                ? PreferenceLayout.UltraFeedback
                : PreferenceLayout.Plain;
        }
        throw DatasetLoader.UnknownLayout("preference", first, location, KnownLayouts);
    }

    private static RecordOutcome<PreferenceExample> ParsePlain(JsonObject record, string location) =>
        RecordOutcome<PreferenceExample>.Accept(new PreferenceExample(
            NonEmptyString(record, "prompt", location),
            String(record, "chosen", location),
            String(record, "rejected", location),
            location));

    private static RecordOutcome<PreferenceExample> ParseHhRlhf(JsonObject record, string location)
    {
        var chosen = String(record, "chosen", location);
        var rejected = String(record, "rejected", location);
        var (prompt, chosenResponse) = SplitTranscript(chosen, "chosen", location);
        if (!rejected.StartsWith(prompt, StringComparison.Ordinal))
        {
            throw Error(location, "rejected",
                "does not start with the prompt of 'chosen' (its transcript up to the last \"\\n\\nAssistant:\"); " +
                "the two transcripts must share every turn but the last answer");
        }
        return RecordOutcome<PreferenceExample>.Accept(
            new PreferenceExample(prompt, chosenResponse, rejected[prompt.Length..], location));
    }

    /// <summary>Splits an HH transcript after its last <c>"\n\nAssistant:"</c>: (prompt with that marker, response).</summary>
    internal static (string Prompt, string Response) SplitTranscript(string transcript, string field, string location)
    {
        var at = transcript.LastIndexOf(AssistantTurn, StringComparison.Ordinal);
        if (at < 0)
        {
            throw Error(location, field, "has no \"\\n\\nAssistant:\" turn (expected an Anthropic hh-rlhf transcript)");
        }
        var end = at + AssistantTurn.Length;
        if (string.IsNullOrWhiteSpace(transcript[..at].Replace("Human:", "", StringComparison.Ordinal)))
        {
            throw Error(location, field, "has an empty prompt before its last \"\\n\\nAssistant:\" turn");
        }
        return (transcript[..end], transcript[end..]);
    }

    private static RecordOutcome<PreferenceExample> ParseUltraFeedback(JsonObject record, string location) =>
        RecordOutcome<PreferenceExample>.Accept(new PreferenceExample(
            NonEmptyString(record, "prompt", location),
            LastAssistantContent(record, "chosen", location),
            LastAssistantContent(record, "rejected", location),
            location));

    private static RecordOutcome<PreferenceExample> ParsePku(JsonObject record, string location, bool useSafer)
    {
        var prompt = NonEmptyString(record, "prompt", location);
        string[] responses = [String(record, "response_0", location), String(record, "response_1", location)];
        var chosen = ZeroOrOne(record, useSafer ? "safer_response_id" : "better_response_id", location);
        return RecordOutcome<PreferenceExample>.Accept(
            new PreferenceExample(prompt, responses[chosen], responses[1 - chosen], location));
    }
}
