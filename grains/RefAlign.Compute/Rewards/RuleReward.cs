using System.Globalization;
using System.Text.RegularExpressions;

namespace RefAlign.Compute.Rewards;

/// <summary>What a rule reward made of one response.</summary>
public sealed record RuleOutcome(string? Extracted, bool Correct, bool Formatted, double Score);

/// <summary>
/// A verifiable reward (docs/algorithms.md §9): the answer is the last match of a regular expression (its group 1 when
/// it has one; default the last number), compared with the data's <c>answer</c> exactly or as a number within a tolerance;
/// score = 1 if correct, plus the format bonus when the response has the format. Patterns run on .NET's non-backtracking
/// engine, so a pattern from a remote config cannot make matching take more than linear time.
/// </summary>
public sealed class RuleReward
{
    /// <summary>Longest pattern accepted (a pattern is config, not a program).</summary>
    public const int MaxPatternLength = 1000;

    readonly Regex _pattern;
    readonly Regex? _format;
    readonly RuleMatch _match;
    readonly double _tolerance;
    readonly double _bonus;

    public RuleReward(RewardSpec spec)
    {
        _pattern = Compile(spec.Pattern ?? RewardSpec.DefaultPattern, "pattern");
        _format = spec.FormatPattern is { } f ? Compile(f, "format_pattern") : null;
        _match = spec.Match ?? RuleMatch.Numeric;
        _tolerance = spec.Tolerance ?? RewardSpec.DefaultTolerance;
        _bonus = spec.FormatBonus ?? 0;
    }

    /// <summary>The compiled pattern; <see cref="ArgumentException"/> (ParamName = the field) when it is invalid or unsupported.</summary>
    public static Regex Compile(string pattern, string field)
    {
        if (pattern.Length == 0 || pattern.Length > MaxPatternLength)
            throw new ArgumentException($"must be a regular expression of 1 to {MaxPatternLength} characters", field);
        try { return new Regex(pattern, RegexOptions.NonBacktracking | RegexOptions.CultureInvariant); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw new ArgumentException($"is not a usable regular expression ({e.Message})", field, e);
        }
    }

    public RuleOutcome Judge(string response, string answer)
    {
        var matches = _pattern.Matches(response);
        string? extracted = null;
        if (matches.Count > 0)
        {
            var last = matches[^1];
            extracted = last.Groups.Count > 1 && last.Groups[1].Success ? last.Groups[1].Value : last.Value;
        }
        var correct = extracted is not null && (_match == RuleMatch.Exact
            ? extracted.Trim() == answer.Trim()
            : Number(extracted) is { } x && Number(answer) is { } a && Math.Abs(x - a) <= _tolerance);
        var formatted = _format?.IsMatch(response) ?? extracted is not null;
        return new RuleOutcome(extracted, correct, formatted, (correct ? 1.0 : 0.0) + (formatted ? _bonus : 0.0));
    }

    static double? Number(string text) =>
        double.TryParse(text.Trim().Replace(",", "", StringComparison.Ordinal), NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
        && double.IsFinite(v) ? v : null;
}
