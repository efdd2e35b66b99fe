using System.Globalization;
using System.Text.RegularExpressions;

namespace RefAlign.Compute.Rewards;

/// <summary>
/// A response split into its answer and its verbalised confidence. <see cref="Found"/> is false when the response
/// had no <c>### Confidence: x</c> marker (then <see cref="Confidence"/> is the default 1.0).
/// </summary>
public sealed record ParsedConfidence(string Answer, double Confidence, bool Found);

/// <summary>
/// Parses the verbalised confidence of CONQORD-style responses (docs/algorithms.md §3): <c>… answer … ### Confidence: 0.85</c>.
/// <para>
/// The <b>last</b> match of <see cref="Pattern"/> wins: the confidence is what the response ends with, and an
/// earlier occurrence (the model quoting the format, or restating then revising its confidence) is part of the
/// answer text. Everything from the start of that last match to the end of the response (the "tail", including
/// any text after the number) is removed from the answer, and trailing whitespace is trimmed; BERTScore is then
/// computed on <see cref="ParsedConfidence.Answer"/>. Without a match the answer is the response with trailing
/// whitespace trimmed and the confidence is 1.0.
/// </para>
/// The value is clamped to [0, 1] (e.g. "1.5" → 1.0); numbers such as ".85" are accepted as the spec regex allows.
/// </summary>
public static partial class ConfidenceParser
{
    /// <summary>The spec's regex; group 1 is the number.</summary>
    public const string Pattern = @"### Confidence: ([0-9]*\.?[0-9]+)";

    /// <summary>Confidence of a response without the marker.</summary>
    public const double DefaultConfidence = 1.0;

    [GeneratedRegex(Pattern, RegexOptions.CultureInvariant)]
    private static partial Regex ConfidenceRegex();

    public static ParsedConfidence Parse(string response)
    {
        ArgumentNullException.ThrowIfNull(response);
        Match? last = null;
        for (var m = ConfidenceRegex().Match(response); m.Success; m = m.NextMatch()) last = m;
        if (last is null) return new ParsedConfidence(response.TrimEnd(), DefaultConfidence, false);

        // The regex admits only ASCII digits and one optional point, so this parse cannot fail; very long digit
        // strings overflow to +∞, which the clamp maps to 1.
        var value = double.Parse(last.Groups[1].ValueSpan, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);
        return new ParsedConfidence(response[..last.Index].TrimEnd(), Math.Clamp(value, 0.0, 1.0), true);
    }
}
