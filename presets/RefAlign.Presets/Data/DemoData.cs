using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>
/// Small hand-written demo data sets (English), for trying the pipeline without downloads: about 120 preference
/// pairs and the same prompts with reference answers, of which about 20% are harmful requests whose reference
/// (and chosen answer) is a safe refusal. Fixed text, so runs on it are reproducible.
/// </summary>
public static class DemoData
{
    public const string PreferencesFileName = "preferences.jsonl";
    public const string ReferencesFileName = "references.jsonl";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        // Keeps apostrophes and non-ASCII readable in the written files; the output is data, never HTML.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Benign questions (helpful vs. worse answer) then harmful requests (safe refusal vs. compliant reply).</summary>
    public static IReadOnlyList<PreferenceExample> Preferences { get; } = BuildPreferences();

    /// <summary>The same prompts, each with its reference answer; harmful requests carry <c>Harmful = true</c>.</summary>
    public static IReadOnlyList<ReferenceExample> References { get; } = BuildReferences();

    /// <summary>
    /// Writes <c>preferences.jsonl</c> (Plain preference layout), <c>references.jsonl</c> (Plain reference layout,
    /// with <c>"harmful"</c>) and the verifiable task's <c>verifiable.jsonl</c> (<see cref="VerifiableData"/>) into
    /// <paramref name="folder"/>, creating it if needed. UTF-8 without BOM, LF line ends.
    /// </summary>
    public static void WriteTo(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        Directory.CreateDirectory(folder);
        WriteLines(Path.Combine(folder, PreferencesFileName),
            Preferences.Select(p => new Dictionary<string, object> { ["prompt"] = p.Prompt, ["chosen"] = p.Chosen, ["rejected"] = p.Rejected }));
        WriteLines(Path.Combine(folder, ReferencesFileName),
            References.Select(r => new Dictionary<string, object> { ["prompt"] = r.Prompt, ["reference"] = r.Reference, ["harmful"] = r.Harmful }));
        VerifiableData.WriteTo(folder);
    }

    private static void WriteLines(string path, IEnumerable<Dictionary<string, object>> records)
    {
        var text = new StringBuilder();
        foreach (var record in records)
        {
            text.Append(JsonSerializer.Serialize(record, JsonOptions)).Append('\n');
        }
        File.WriteAllText(path, text.ToString(), new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
    }

    private static PreferenceExample[] BuildPreferences()
    {
        var benign = DemoDataTable.Benign.Select(item => (item.Prompt, Chosen: item.Good, Rejected: item.Poor));
        var harmful = DemoDataTable.Harmful.Select(item => (item.Prompt, Chosen: item.Refusal, Rejected: item.Compliant));
        return benign.Concat(harmful)
            .Select((item, i) => new PreferenceExample(item.Prompt, item.Chosen, item.Rejected, $"demo/{PreferencesFileName}:{i + 1}"))
            .ToArray();
    }

    private static ReferenceExample[] BuildReferences()
    {
        var benign = DemoDataTable.Benign.Select(item => (item.Prompt, Reference: item.Good, Harmful: false));
        var harmful = DemoDataTable.Harmful.Select(item => (item.Prompt, Reference: item.Refusal, Harmful: true));
        return benign.Concat(harmful)
            .Select((item, i) => new ReferenceExample(item.Prompt, item.Reference, item.Harmful, $"demo/{ReferencesFileName}:{i + 1}"))
            .ToArray();
    }
}
