using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// Progress of an evaluation, local or remote: a bar per model on an interactive terminal, one stderr line per report
/// otherwise (scripts, <c>--json</c>, redirected output).
/// </summary>
internal static class EvalProgressView
{
    /// <summary>Runs <paramref name="body"/>, which asks for the progress of model (index, count, label) as it reaches it.</summary>
    public static async Task RunAsync(bool json, Func<Func<int, int, string, IProgress<(int Done, int Total)>>, Task> body)
    {
        if (json || Console.IsErrorRedirected || Console.IsOutputRedirected)
            await body((m, count, label) => new LineProgress($"[{m + 1}/{count}] {label}"));
        else
            // No refresh timer: it competes with libtorch's workers on small machines; each report refreshes.
            await AnsiConsole.Progress().AutoRefresh(false).AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .StartAsync(ctx =>
                {
                    var bars = new Dictionary<int, IProgress<(int, int)>>();
                    return body((m, _, label) => bars.TryGetValue(m, out var bar) ? bar : bars[m] = new BarProgress(ctx, ctx.AddTask(Markup.Escape(label))));
                });
    }

    sealed class LineProgress(string prefix) : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) p) => Console.Error.WriteLine($"{prefix}: {p.Done}/{p.Total} examples");
    }

    sealed class BarProgress(ProgressContext context, ProgressTask task) : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) p)
        {
            task.MaxValue = p.Total;
            task.Value = p.Done;
            context.Refresh();
        }
    }
}
