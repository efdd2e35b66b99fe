using RefAlign.Compute;
using RefAlign.Compute.Training;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// The train progress bar (refreshed on each step, no timer thread: a background refresher competes with libtorch's
/// OpenMP workers on small machines) and the end-of-run summary. Plain lines when output is redirected.
/// </summary>
internal sealed class TrainProgress(RunConfig config, bool quiet) : IRunObserver
{
    readonly List<StepReport> _steps = [];
    readonly List<(int Step, IReadOnlyDictionary<string, double> Metrics)> _evals = [];
    readonly StepGlance _glance = new();
    readonly GlanceColumn _glanceColumn = new();
    ProgressTask? _task;
    ProgressContext? _context;
    string? _lastCheckpoint;

    string Headline => config.IsRollout ? "reward/mean" : "loss";

    public async Task<int> RunAsync(int total, Func<Task<int>> run)
    {
        if (quiet || Console.IsOutputRedirected) return await run();
        var result = 0;
        await AnsiConsole.Progress().AutoRefresh(false).AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), _glanceColumn)
            .StartAsync(async ctx =>
            {
                _context = ctx;
                _task = ctx.AddTask($"{config.Name} ({config.Algorithm})", maxValue: total);
                ctx.Refresh();
                result = await run();
            });
        return result;
    }

    public void OnStep(StepReport r)
    {
        _steps.Add(r);
        var value = r.Metrics.GetValueOrDefault(Headline);
        var head = $"step {r.Step + 1}/{r.TotalSteps} {Headline} {value:F4} {r.TokensPerSecond:F0} tok/s";
        var line = head + " " + string.Join(" ", r.PhaseSeconds.Where(p => p.Key != "step").Select(p => $"{p.Key} {p.Value:F2}s"));
        if (_task is not null)
        {
            // On a terminal the phases sit beside the bar, after the headline's sparkline.
            _glance.Add(r.Step + 1, r.Metrics, r.PhaseSeconds);
            _task.Description = Markup.Escape(head);
            _glanceColumn.Text = _glance.ToString();
            _task.Increment(1);
            _context!.Refresh();
        }
        else if (!quiet) Console.Error.WriteLine(line);
    }

    public void OnEval(int step, IReadOnlyDictionary<string, double> metrics)
    {
        _evals.Add((step, metrics));
        if (_task is null && !quiet)
            Console.Error.WriteLine($"eval @ {step}: " + string.Join(" ", metrics.Select(m => $"{m.Key} {m.Value:F4}")));
    }

    public void OnCheckpoint(int step, string folder) => _lastCheckpoint = folder;

    public object Summary(int done, int total, int? referencePasses, int skippedLines = 0)
    {
        double First(string k) => _steps.Count == 0 ? double.NaN : _steps.Take(Math.Max(1, _steps.Count / 5)).Average(s => s.Metrics.GetValueOrDefault(k));
        double Last(string k) => _steps.Count == 0 ? double.NaN : _steps.TakeLast(Math.Max(1, _steps.Count / 5)).Average(s => s.Metrics.GetValueOrDefault(k));
        return new
        {
            run = config.Name, algorithm = System.Text.Json.JsonSerializer.Serialize(config.Algorithm).Trim('"'), steps = done, total_steps = total,
            headline = Headline, first_fifth_mean = First(Headline), last_fifth_mean = Last(Headline),
            accuracy_first = config.IsPreference ? First("rewards/accuracies") : (double?)null,
            accuracy_last = config.IsPreference ? Last("rewards/accuracies") : (double?)null,
            final_eval = _evals.LastOrDefault().Metrics, checkpoint = _lastCheckpoint, reference_passes = referencePasses,
            skipped_lines = skippedLines,
            metrics_file = Path.Combine(config.OutputDir, "metrics.jsonl"),
        };
    }

    public void PrintSummary(object summary)
    {
        var t = new Table().AddColumns("", "value");
        foreach (var p in summary.GetType().GetProperties())
        {
            var v = p.GetValue(summary);
            var text = v is IReadOnlyDictionary<string, double> d ? string.Join(", ", d.Select(kv => $"{kv.Key} {kv.Value:F4}")) : $"{v}";
            t.AddRow(p.Name, Markup.Escape(text));
        }
        AnsiConsole.Write(t);
    }
}
