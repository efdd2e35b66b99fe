using System.Globalization;
using System.Text;
using System.Text.Json;
using RefAlign.Compute.Evaluation;
using RefAlign.Compute.Training;

namespace RefAlign.Cli.Commands;

/// <summary>
/// Writes an evaluation's files into its output folder: <c>eval.json</c> (settings, metrics, intervals, win rates),
/// <c>samples.jsonl</c> (one line per sampled answer: enough to recompute every metric) and <c>report.md</c> with PNG
/// plots drawn by ScottPlot (BERTScore F1 per model; reliability diagrams in the confidence variant).
/// </summary>
internal static class EvalReportWriter
{
    public static IReadOnlyList<string> Write(EvalConfig eval, RunConfig run, IReadOnlyList<ModelEvaluation> results, IReadOnlyList<SideBySide> sideBySide)
    {
        var dir = eval.OutputDir;
        var files = new List<string>();
        string Output(string name) { var p = Path.Combine(dir, name); files.Add(p); return p; }

        File.WriteAllText(Output("eval.json"), JsonSerializer.Serialize(new
        {
            run_config = eval.RunConfig,
            algorithm = run.Algorithm,
            seed = eval.Seed,
            correct_threshold = eval.CorrectThreshold,
            bootstrap = eval.Bootstrap,
            models = results.Select(r => new { model = r.Model, path = r.Path, metrics = r.Metrics, f1_interval = r.F1Interval, notes = r.Notes }),
            side_by_side = sideBySide,
        }, CliSupport.Json));

        using (var samples = new StreamWriter(Output("samples.jsonl")))
            foreach (var s in results.SelectMany(r => r.Samples))
                samples.WriteLine(JsonSerializer.Serialize(s, Compact));

        var plots = new List<(string Title, string File)>();
        for (var i = 0; i < results.Count; i++)
        {
            var r = results[i];
            if (r.Samples.Count == 0) continue;
            var f1 = $"f1_{i}.png";
            Histogram(r.Samples.Select(s => s.F1).ToList(), $"BERTScore F1 — {r.Model}", Output(f1));
            plots.Add(($"BERTScore F1 of each answer: {r.Model}", f1));
            if (r.Samples.All(s => s.Confidence is not null))
            {
                var reliability = $"reliability_{i}.png";
                Reliability(r.Samples, $"Reliability — {r.Model}", Output(reliability));
                plots.Add(($"Reliability diagram (10 equal-width bins): {r.Model}", reliability));
            }
        }
        File.WriteAllText(Output("report.md"), Markdown(eval, run, results, sideBySide, plots));
        return files;
    }

    static readonly JsonSerializerOptions Compact = new(CliSupport.Json) { WriteIndented = false };

    // SkiaSharp's dependency-free native library cannot ask fontconfig, so labels need a font file: the first system
    // TrueType font (DejaVu Sans preferred). Without one the plots are drawn without text and the report says so.
    const string FontName = "RefAlign Plot Sans";
    static readonly Lazy<string?> Font = new(() =>
    {
        var candidates = new[] { "/usr/share/fonts", "/usr/local/share/fonts" }.Where(Directory.Exists)
            .SelectMany(d => Directory.EnumerateFiles(d, "*.ttf", SearchOption.AllDirectories)).ToList();
        var file = candidates.FirstOrDefault(f => Path.GetFileName(f) == "DejaVuSans.ttf") ?? candidates.FirstOrDefault();
        if (file is not null) ScottPlot.Fonts.AddFontFile(FontName, file);
        return file;
    });

    static ScottPlot.Plot NewPlot()
    {
        var plot = new ScottPlot.Plot();
        if (Font.Value is not null) plot.Font.Set(FontName);
        return plot;
    }

    static string Markdown(EvalConfig eval, RunConfig run, IReadOnlyList<ModelEvaluation> results, IReadOnlyList<SideBySide> sideBySide,
        List<(string Title, string File)> plots)
    {
        var c = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(c, $"# Evaluation of {run.Name} ({run.Algorithm})").AppendLine();
        var correct = run.RefAlign.EffectiveRewards.Any(r => r.Kind == Compute.Rewards.RewardKind.Rule)
            ? "correct when the rule reward finds the data's answer" : $"correct when BERTScore F1 ≥ {eval.CorrectThreshold}";
        md.AppendLine(c, $"Run config `{eval.RunConfig}`, held-out split of `{run.Data.Path}`; seed {eval.Seed}, {correct}, {eval.Bootstrap} bootstrap resamples over prompts.").AppendLine();
        var keys = results.SelectMany(r => r.Metrics.Keys).Distinct().ToList();
        md.AppendLine("| metric | " + string.Join(" | ", results.Select(r => r.Model)) + " |");
        md.AppendLine("|---|" + string.Concat(results.Select(_ => "---|")));
        foreach (var k in keys)
            md.AppendLine($"| `{k}` | " + string.Join(" | ", results.Select(r => r.Metrics.TryGetValue(k, out var v) ? v.ToString("G5", c) : "—")) + " |");
        md.AppendLine();
        foreach (var r in results.Where(r => r.F1Interval is not null))
            md.AppendLine(c, $"- {r.Model}: mean BERTScore F1 {r.Metrics["bertscore/f1"]:F4}, 95 % interval {r.F1Interval!.Low:F4}–{r.F1Interval.High:F4}");
        foreach (var note in results.SelectMany(r => r.Notes.Select(n => $"{r.Model}: {n}"))) md.AppendLine(c, $"- {note}");
        if (sideBySide.Count > 0)
        {
            md.AppendLine().AppendLine("## Side by side").AppendLine();
            md.AppendLine("| model | against | win rate | 95 % interval | wins | ties | losses |").AppendLine("|---|---|---|---|---|---|---|");
            foreach (var s in sideBySide)
                md.AppendLine(c, $"| {s.ModelB} | {s.ModelA} | {s.WinRate:F3} | {s.Interval.Low:F3}–{s.Interval.High:F3} | {s.Wins} | {s.Ties} | {s.Losses} |");
        }
        if (plots.Count > 0 && Font.Value is null)
            md.AppendLine().AppendLine("(No TrueType font was found under /usr/share/fonts: the plots have no labels. `apt-get install fonts-dejavu-core` adds one.)");
        foreach (var (title, file) in plots) md.AppendLine().AppendLine(c, $"![{title}]({file})");
        return md.ToString();
    }

    static void Histogram(IReadOnlyList<double> values, string title, string file)
    {
        const int bins = 20;
        var counts = new double[bins];
        foreach (var v in values) counts[Math.Clamp((int)(v * bins), 0, bins - 1)]++;
        var plot = NewPlot();
        var bars = plot.Add.Bars([.. Enumerable.Range(0, bins).Select(b => (b + 0.5) / bins)], counts);
        foreach (var bar in bars.Bars) bar.Size = 1.0 / bins;
        plot.Title(title);
        plot.XLabel("BERTScore F1");
        plot.YLabel("answers");
        plot.Axes.SetLimitsX(0, 1);
        plot.SavePng(file, 640, 400);
    }

    static void Reliability(IReadOnlyList<EvalSample> samples, string title, string file)
    {
        const int bins = 10;
        var plot = NewPlot();
        var positions = new List<double>();
        var accuracy = new List<double>();
        for (var b = 0; b < bins; b++)
        {
            // The same bins as the ECE: [b/10, (b+1)/10), the last closed.
            var inBin = samples.Where(s => Math.Min((int)(s.Confidence!.Value * bins), bins - 1) == b).ToList();
            if (inBin.Count == 0) continue;
            positions.Add((b + 0.5) / bins);
            accuracy.Add(inBin.Count(s => s.Correct) / (double)inBin.Count);
        }
        var bars = plot.Add.Bars([.. positions], [.. accuracy]);
        foreach (var bar in bars.Bars) bar.Size = 1.0 / bins;
        plot.Add.Line(0, 0, 1, 1);
        plot.Title(title);
        plot.XLabel("confidence");
        plot.YLabel("accuracy");
        plot.Axes.SetLimits(0, 1, 0, 1);
        plot.SavePng(file, 480, 480);
    }
}
