using System.Text.RegularExpressions;

namespace RefAlign.Grains;

/// <summary>
/// Keys of an evaluation's grains: the evaluation <c>&lt;run id&gt;.eval-&lt;hex6&gt;</c>, each model's learner and
/// workers <c>&lt;evaluation&gt;-&lt;model index&gt;</c>. A run id ends in <c>-&lt;date&gt;-&lt;time&gt;-&lt;hex6&gt;</c>,
/// so no run id has this form.
/// </summary>
public static partial class EvaluationKeys
{
    public static string New(string runId) => $"{runId}.eval-{Guid.NewGuid().ToString("N")[..6]}";

    public static string Model(string evaluation, int model) => $"{evaluation}-{model}";

    public static bool TryParse(string key, out string evaluation, out int model)
    {
        var m = ModelKey().Match(key);
        (evaluation, model) = m.Success ? (m.Groups[1].Value, int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)) : ("", -1);
        return m.Success;
    }

    [GeneratedRegex(@"\A(.+\.eval-[0-9a-f]{6})-(\d{1,4})\z")]
    private static partial Regex ModelKey();
}
