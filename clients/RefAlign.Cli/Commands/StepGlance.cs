using System.Globalization;
using System.Text;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace RefAlign.Cli.Commands;

/// <summary>
/// What an interactive progress bar shows beside itself: a sparkline of the run's headline metric (reward/mean for
/// RefAlign, loss for preference and SFT runs) over the recent steps, and the last step's phase times.
/// </summary>
internal sealed class StepGlance(int width = 24)
{
    const string Bars = "▁▂▃▄▅▆▇█";
    // By step number, so a replayed stretch of steps (a watch from the start, a restart) overwrites, not repeats.
    readonly SortedDictionary<int, double> _values = [];
    IReadOnlyList<KeyValuePair<string, double>> _phases = [];

    /// <summary>The metric the sparkline follows; null until a step carried one.</summary>
    public string? Metric { get; private set; }

    /// <summary>reward/mean when the step reports it (RefAlign), else loss (preference, SFT); null when neither.</summary>
    public static string? Headline(IReadOnlyDictionary<string, double> metrics) =>
        metrics.ContainsKey("reward/mean") ? "reward/mean" : metrics.ContainsKey("loss") ? "loss" : null;

    /// <summary>Folds in step <paramref name="step"/>'s metrics and phase times (seconds by phase, "step" = the total).</summary>
    public void Add(int step, IReadOnlyDictionary<string, double> metrics, IEnumerable<KeyValuePair<string, double>> phases)
    {
        if (Headline(metrics) is { } name)
        {
            if (Metric != name) _values.Clear(); // one metric per line; a run reports the same one every step
            Metric = name;
            _values[step] = metrics[name];
        }
        var last = phases.Where(p => p.Key != "step").ToList();
        if (last.Count > 0) _phases = last;
    }

    /// <summary>"reward/mean ▁▃▅█ 0.4123 · generate 1.20s score 0.31s learn 2.05s", or "" before the first step.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (Metric is not null && _values.Count > 0)
            parts.Add($"{Metric} {Sparkline([.. _values.Values], width)} {RemoteSupport.Metric(_values.Values.Last())}");
        if (_phases.Count > 0) parts.Add(Phases(_phases));
        return string.Join(" · ", parts);
    }

    /// <summary>
    /// The last <paramref name="width"/> values as ▁…█, scaled between their own minimum and maximum (a flat series is
    /// all ▄); a value that is not finite is a space.
    /// </summary>
    public static string Sparkline(IReadOnlyList<double> values, int width)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        var shown = values.Skip(Math.Max(0, values.Count - width)).ToList();
        var finite = shown.Where(double.IsFinite).ToList();
        if (finite.Count == 0) return new string(' ', shown.Count);
        double lo = finite.Min(), hi = finite.Max();
        var b = new StringBuilder(shown.Count);
        foreach (var v in shown)
            b.Append(!double.IsFinite(v) ? ' '
                : hi == lo ? Bars[Bars.Length / 2 - 1]
                : Bars[(int)Math.Round((v - lo) / (hi - lo) * (Bars.Length - 1))]);
        return b.ToString();
    }

    /// <summary>Phase times in the order the step ran them: "generate 1.20s score 0.31s learn 2.05s".</summary>
    public static string Phases(IEnumerable<KeyValuePair<string, double>> phases) =>
        string.Join(" ", phases.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key} {p.Value:0.00}s")));
}

/// <summary>A progress column that shows the text last set (a <see cref="StepGlance"/>) beside a one-task bar.</summary>
internal sealed class GlanceColumn : ProgressColumn
{
    protected override bool NoWrap => true;

    public string Text { get; set; } = "";

    public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
        new Text(Text, new Style(Color.Grey));
}
