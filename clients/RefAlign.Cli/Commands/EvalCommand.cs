using System.CommandLine;
using RefAlign.Compute.Evaluation;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign eval --config eval.json</c>: evaluates checkpoints (or HF model folders) on a run's held-out data in
/// this process and writes <c>eval.json</c>, <c>samples.jsonl</c> and <c>report.md</c> with PNG plots.
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Eval config (JSON): run_config, models, output_dir, examples, num_samples, seed, correct_threshold, bootstrap.", Required = true };
        var json = CliSupport.JsonOption();
        var device = CliSupport.DeviceOption();
        var cmd = new Command("eval", "Evaluate checkpoints on a run's held-out data: BERTScore F1 with a bootstrap interval, calibration (ECE, AUROC), preference accuracies, side-by-side win rates; writes eval.json, samples.jsonl and report.md.")
        {
            config, device, json,
        };
        cmd.SetAction(async (r, ct) => await CliSupport.RunAsync(() => RunAsync(r.GetValue(config)!, r.GetValue(device)!, r.GetValue(json), ct)));
        return cmd;
    }

    static async Task<int> RunAsync(string configPath, string device, bool json, CancellationToken cancellation)
    {
        var target = CliSupport.Device(device);
        var eval = EvalConfig.Load(configPath);
        var run = RunConfig.LoadLocal(eval.RunConfig).Validate();
        var tokenizer = TextTokenizer.Load(run.Policy.Model);
        // Every held-out example the eval asks for, whatever the run evaluated during training.
        var data = TrainingData.Load(run with { EvalExamples = eval.Examples ?? run.EvalExamples }, tokenizer);
        Directory.CreateDirectory(eval.OutputDir);
        var labels = Labels(eval.Models);
        var results = new List<ModelEvaluation>();
        await EvalProgressView.RunAsync(json, async progressOf =>
        {
            for (var m = 0; m < eval.Models.Count; m++)
            {
                var folder = eval.Models[m];
                var modelConfig = EvalModels.ConfigFor(run, eval, folder, Path.Combine(eval.OutputDir, "work", labels[m]));
                using var services = EvalModels.Open(modelConfig, folder, tokenizer, data, target);
                results.Add(await Evaluator.EvaluateAsync(labels[m], folder, modelConfig, data, services, eval, progressOf(m, eval.Models.Count, labels[m]), cancellation));
            }
        });
        var sideBySide = Evaluator.CompareToFirst(run, results, eval);
        var files = EvalReportWriter.Write(eval, run, results, sideBySide);
        Report(json, results, sideBySide, files);
        return 0;
    }

    /// <summary>The outcome on stdout: JSON for scripts, else a metrics table, intervals and win rates.</summary>
    internal static void Report(bool json, IReadOnlyList<ModelEvaluation> results, IReadOnlyList<SideBySide> sideBySide, IReadOnlyList<string> files)
    {
        if (json) CliSupport.WriteJson(new { files, models = results.Select(r => new { model = r.Model, path = r.Path, metrics = r.Metrics, f1_interval = r.F1Interval, notes = r.Notes }), side_by_side = sideBySide });
        else Show(results, sideBySide, files);
    }

    /// <summary>Short unique labels: a checkpoint is named by its run folder and step, a model folder by its name.</summary>
    static List<string> Labels(IReadOnlyList<string> folders)
    {
        var labels = folders.Select(f =>
        {
            var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(f));
            var parent = Path.GetFileName(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(f)));
            return name.StartsWith("step-", StringComparison.Ordinal) && parent == "checkpoints"
                ? $"{Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(f))))}@{name}" : name;
        }).ToList();
        return [.. labels.Select((l, i) => labels.Count(x => x == l) > 1 ? $"{l}#{i}" : l)];
    }

    static void Show(IReadOnlyList<ModelEvaluation> results, IReadOnlyList<SideBySide> sideBySide, IReadOnlyList<string> files)
    {
        var keys = results.SelectMany(r => r.Metrics.Keys).Distinct().ToList();
        var table = new Table().AddColumn("metric");
        foreach (var r in results) table.AddColumn(Markup.Escape(r.Model));
        foreach (var k in keys)
            table.AddRow([Markup.Escape(k), .. results.Select(r => r.Metrics.TryGetValue(k, out var v) ? v.ToString("G5", System.Globalization.CultureInfo.InvariantCulture) : "—")]);
        AnsiConsole.Write(table);
        foreach (var r in results.Where(r => r.F1Interval is not null))
            AnsiConsole.MarkupLineInterpolated($"{r.Model}: BERTScore F1 {r.Metrics["bertscore/f1"]:F4} (95 % CI {r.F1Interval!.Low:F4}–{r.F1Interval.High:F4})");
        foreach (var s in sideBySide)
            AnsiConsole.MarkupLineInterpolated($"{s.ModelB} vs {s.ModelA}: win rate {s.WinRate:F3} (95 % CI {s.Interval.Low:F3}–{s.Interval.High:F3}; {s.Wins} wins, {s.Ties} ties, {s.Losses} losses)");
        foreach (var note in results.SelectMany(r => r.Notes.Select(n => $"{r.Model}: {n}"))) AnsiConsole.MarkupLineInterpolated($"[yellow]{note}[/]");
        AnsiConsole.MarkupLineInterpolated($"[green]wrote[/] {string.Join(", ", files)}");
    }
}
