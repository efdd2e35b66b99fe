using System.Globalization;
using System.Text.Json.Nodes;

namespace RefAlign.Compute.Formats;

/// <summary>
/// A float field of an HF <c>config.json</c> as Python's json writes it: always with a decimal point or an exponent
/// (<c>0.0</c>, not <c>0</c>). transformers' strict config dataclasses refuse an integer where a float is declared
/// (BART's <c>encoder_layerdrop</c> was refused: tests/crosscheck).
/// </summary>
public static class HfJsonFloat
{
    public static JsonNode Of(double value)
    {
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "config floats must be finite.");
        var text = value.ToString("R", CultureInfo.InvariantCulture);
        if (!text.Contains('.', StringComparison.Ordinal) && !text.Contains('E', StringComparison.Ordinal)) text += ".0";
        // A node parsed from text writes that text back unchanged.
        return JsonNode.Parse(text)!;
    }
}
