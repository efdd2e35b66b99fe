using System.Text.Json;
using System.Text.Json.Nodes;

namespace RefAlign.Compute.Formats;

/// <summary>Reading HF <c>config.json</c> files: lenient on absent fields (defaults), strict on mistyped ones.</summary>
internal static class HfConfigJson
{
    /// <summary>Parses <c>folder/config.json</c>; a missing or malformed file is a <see cref="ModelFormatException"/> naming it.</summary>
    public static (JsonObject Root, string Path) Load(string folder)
    {
        var path = System.IO.Path.Combine(folder, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: config.json is missing from the model folder.");
        try
        {
            return (JsonNode.Parse(Files.ReadRoots.Current.ReadAllText(path))?.AsObject() ?? throw new JsonException("empty document"), path);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new ModelFormatException($"{path}: not valid JSON ({e.Message}).", e);
        }
    }

    public static string? Str(JsonObject j, string f, string? dflt) => j[f] is JsonValue v && v.TryGetValue<string>(out var s) ? s : dflt;
    public static bool Bool(JsonObject j, string f, bool dflt) => j[f] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : dflt;
    public static double Dbl(JsonObject j, string f, double dflt) => j[f] is JsonValue v && v.TryGetValue<double>(out var d) ? d : dflt;

    public static int? Int(JsonObject j, string f, string path)
    {
        if (j[f] is not JsonValue v) return null;
        if (v.TryGetValue<int>(out var i)) return i;
        // 4096.0 is an integer; 1e20 and 2^31 are not ones a 32-bit field can hold (a cast would wrap them).
        if (v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
        throw new ModelFormatException($"{path}: field '{f}' must be an integer of 32 bits, found {v.ToJsonString()}.");
    }

    /// <summary>
    /// A size (<c>hidden_size</c>, <c>num_hidden_layers</c>, …) in 1..<paramref name="max"/>; <paramref name="dflt"/> when
    /// absent, required when null. Zero or negative sizes would divide by zero or build empty modules, and the bounds lie
    /// far above any published model, so a config beyond them is a mistake or an attack, refused before any arithmetic.
    /// </summary>
    public static int Size(JsonObject j, string f, string path, int max, int? dflt = null)
    {
        var value = Int(j, f, path) ?? dflt ?? throw new ModelFormatException($"{path}: required field '{f}' is missing.");
        if (value < 1 || value > max)
            throw new ModelFormatException($"{path}: field '{f}' is {value}; it must be in 1..{max}.");
        return value;
    }

    /// <summary>Upper bounds of <see cref="Size"/>: each far beyond the largest published model's value.</summary>
    public const int MaxVocab = 1 << 24, MaxHidden = 1 << 17, MaxIntermediate = 1 << 20, MaxLayers = 1024, MaxHeads = 1 << 12,
        MaxHeadDim = 1 << 14, MaxPositions = 1 << 24;
}
