using System.Text.Json.Nodes;
using static RefAlign.Compute.Data.RecordFields;

namespace RefAlign.Compute.Data;

/// <summary>One supervised example: a prompt and the completion the model learns to produce after it.</summary>
public sealed record SftExample(string Prompt, string Completion, string Source);

/// <summary>
/// Loads supervised fine-tuning data from JSON Lines or Parquet. Its own layout is <c>{"prompt", "completion"}</c>
/// (<c>"response"</c> is accepted for the completion); every preference and reference layout reads too, as the
/// papers' first stages use them:
/// <list type="bullet">
/// <item>HH-RLHF: the chosen dialogue, split at its last Assistant turn (as the DPO reference code builds its SFT set).</item>
/// <item>UltraFeedback-binarized: the prompt and the chosen answer.</item>
/// <item>CONQORD step 1: prompt + chosen, its <c>### Confidence: x</c> tail kept (the model learns to state it).</item>
/// <item>Plain preference files (chosen), plain reference files (reference), PKU-SafeRLHF (the chosen response).</item>
/// </list>
/// </summary>
public static class SftDataset
{
    public static DataLoadResult<SftExample> Load(string path, DataLayout layout = DataLayout.Auto, DataLoadOptions? options = null)
    {
        var useSafer = (options ?? new DataLoadOptions()).PkuPreference == PkuPreference.Safer;
        return DatasetLoader.Load<SftExample>(path, options, (first, location) => Resolve(layout, first, location, useSafer));
    }

    static Func<JsonObject, string, RecordOutcome<SftExample>> Resolve(DataLayout layout, JsonObject first, string location, bool useSafer)
    {
        var completionField = Has(first, "completion") ? "completion" : Has(first, "response") && !Has(first, "chosen") ? "response" : null;
        return layout switch
        {
            DataLayout.Auto or DataLayout.Plain when completionField is { } field => (r, l) => RecordOutcome<SftExample>.Accept(
                new SftExample(NonEmptyString(r, "prompt", l), NonEmptyString(r, field, l), l)),
            DataLayout.Auto or DataLayout.Plain when Has(first, "reference") => FromReference(ReferenceLayout.Plain),
            DataLayout.Conqord => FromReference(ReferenceLayout.Conqord),
            DataLayout.Plain => FromPreference(PreferenceLayout.Plain, useSafer),
            DataLayout.HhRlhf => FromPreference(PreferenceLayout.HhRlhf, useSafer),
            DataLayout.UltraFeedback => FromPreference(PreferenceLayout.UltraFeedback, useSafer),
            DataLayout.PkuSafeRlhf => FromPreference(PreferenceLayout.PkuSafeRlhf, useSafer),
            _ => FromPreference(DetectPreference(first, location), useSafer),
        };
    }

    static PreferenceLayout DetectPreference(JsonObject first, string location)
    {
        try { return PreferenceDataset.Detect(first, location); }
        catch (ModelFormatException)
        {
            throw DatasetLoader.UnknownLayout("SFT", first, location,
                "Plain {prompt, completion}; any preference layout (chosen is the completion); reference layouts {prompt, reference} and CONQORD {prompt, chosen}");
        }
    }

    static Func<JsonObject, string, RecordOutcome<SftExample>> FromPreference(PreferenceLayout layout, bool useSafer)
    {
        var parse = PreferenceDataset.Parser(layout, useSafer);
        return (r, l) =>
        {
            var outcome = parse(r, l);
            return outcome.Example is { } e ? RecordOutcome<SftExample>.Accept(new SftExample(e.Prompt, e.Chosen, e.Source))
                : RecordOutcome<SftExample>.Skip(outcome.SkipReason!);
        };
    }

    static Func<JsonObject, string, RecordOutcome<SftExample>> FromReference(ReferenceLayout layout)
    {
        var parse = ReferenceDataset.Parser(layout);
        return (r, l) =>
        {
            var outcome = parse(r, l);
            return outcome.Example is { } e ? RecordOutcome<SftExample>.Accept(new SftExample(e.Prompt, e.Reference, e.Source))
                : RecordOutcome<SftExample>.Skip(outcome.SkipReason!);
        };
    }
}
