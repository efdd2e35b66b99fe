using System.Text;
using System.Text.Json;
using RefAlign.Client;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign run watch</c>'s display: a progress bar on a terminal, plain lines when stdout is redirected, JSON Lines
/// with --json. The bar is redrawn only when an event arrives (AutoRefresh off): an animated refresh thread competes with
/// libtorch's workers when the CLI shares a small machine with a silo.
/// </summary>
internal static class RunWatch
{
    static readonly JsonSerializerOptions JsonLines = new(CliSupport.Json) { WriteIndented = false };

    /// <summary>Follows the run until its event stream ends; returns the run's final state.</summary>
    public static async Task<RunSummary> FollowAsync(RefAlignClient client, string runId, long after, bool json, CancellationToken ct)
    {
        // Fails fast (NOT_FOUND, unreachable silo) before any display, and gives the step total.
        var run = await client.GetRunAsync(runId, ct);
        var state = new WatchState(run);
        if (json)
        {
            await foreach (var e in Events(client, runId, after, ct))
                Console.Out.WriteLine(JsonSerializer.Serialize(RemoteSupport.EventJson(e), JsonLines));
        }
        else if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            Console.Out.WriteLine($"watching run {runId} ({run.Name}, {run.Algorithm}): {RemoteSupport.StatusName(run.Status)} at step {run.Step}/{run.TotalSteps}");
            await foreach (var e in Events(client, runId, after, ct))
                if (state.Apply(e) is { } line) Console.Out.WriteLine(line);
        }
        else
        {
            var glance = new GlanceColumn();
            await AnsiConsole.Progress()
                .AutoRefresh(false)
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                    new ElapsedTimeColumn(), glance)
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(state.Summary(compact: true)), maxValue: Math.Max(1, state.Total));
                    task.Value = state.Step;
                    ctx.Refresh();
                    await foreach (var e in Events(client, runId, after, ct))
                    {
                        // Each step's full line (metrics, phase times) scrolls above the bar; the bar keeps the gist.
                        if (state.Apply(e) is { } line) AnsiConsole.MarkupLine(Markup.Escape(line));
                        task.MaxValue = Math.Max(1, state.Total);
                        task.Value = Math.Min(state.Step, task.MaxValue);
                        task.Description = Markup.Escape(state.Summary(compact: true));
                        glance.Text = state.Glance.ToString();
                        ctx.Refresh();
                    }
                });
        }
        var final = await client.GetRunAsync(runId, ct);
        if (!json)
        {
            var verdict = $"run {runId} {RemoteSupport.StatusName(final.Status)} at step {final.Step}/{final.TotalSteps}" +
                          (final.Error is null ? "" : $": {final.Error}");
            Console.Out.WriteLine(verdict);
        }
        return final;
    }

    /// <summary>
    /// The run's events after <paramref name="after"/>; when the run no longer keeps some of them (its event log is
    /// bounded), says so on stderr and follows from the oldest it keeps.
    /// </summary>
    static async IAsyncEnumerable<RunEvent> Events(RefAlignClient client, string runId, long after,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        while (true)
        {
            await using var events = client.WatchRunAsync(runId, after, ct).GetAsyncEnumerator(ct);
            while (true)
            {
                bool more;
                try
                {
                    more = await events.MoveNextAsync();
                }
                catch (Grpc.Core.RpcException e) when (e.OldestSequence() is { } oldest && oldest - 1 > after)
                {
                    Console.Error.WriteLine($"events before #{oldest} of run {runId} are no longer kept; following from #{oldest}.");
                    after = oldest - 1;
                    break;
                }
                if (!more) yield break;
                after = events.Current.Sequence;
                yield return events.Current;
            }
        }
    }

    /// <summary>What the display shows, folded from the events: step/total, reward or loss, tokens/s, phase times.</summary>
    sealed class WatchState(RunSummary run)
    {
        readonly Dictionary<string, double> _phases = new(StringComparer.Ordinal);
        int _phaseStep = -1;
        IReadOnlyDictionary<string, double> _metrics = run.LastMetrics;

        /// <summary>The headline metric's sparkline and the last step's phases, for the interactive bar only.</summary>
        public StepGlance Glance { get; } = new();

        public int Step { get; private set; } = run.Step;
        public int Total { get; private set; } = run.TotalSteps;
        RunStatus Status { get; set; } = run.Status;

        /// <summary>Folds the event in; returns the line a plain display prints for it, or null.</summary>
        public string? Apply(RunEvent e)
        {
            Status = e.Status;
            switch (e.Kind)
            {
                case RunEventKind.Phase:
                    if (e.Step != _phaseStep)
                    {
                        _phases.Clear();
                        _phaseStep = e.Step;
                    }
                    if (e.Phase is not null && e.PhaseSeconds is { } s) _phases[e.Phase] = _phases.GetValueOrDefault(e.Phase) + s;
                    return null;
                case RunEventKind.Step:
                    Step = e.Step; // steps completed so far; a replay from the start walks them again
                    if (e.Metrics.Count > 0) _metrics = e.Metrics;
                    if (e.Metrics.TryGetValue("total_steps", out var total)) Total = (int)total;
                    // The step's phase events come just before it.
                    Glance.Add(e.Step, e.Metrics, _phaseStep == e.Step ? _phases : []);
                    return Summary();
                case RunEventKind.Eval:
                    return $"eval at step {e.Step}: {FormatMetrics(e.Metrics, 6)}";
                case RunEventKind.Checkpoint:
                    return $"checkpoint at step {e.Step}: {e.Message ?? "(written)"}";
                default:
                    return $"status: {RemoteSupport.StatusName(e.Status)}{(e.Message is null ? "" : $" ({e.Message})")}";
            }
        }

        /// <summary>The step line; <paramref name="compact"/> (the bar's label) keeps step, reward or loss, tokens/s.</summary>
        public string Summary(bool compact = false)
        {
            var b = new StringBuilder($"step {Step}/{Total}");
            var reward = Pick(_metrics, "reward/mean", "reward", "rewards/mean", "mean_reward", "rewards/chosen");
            if (reward is { } r) b.Append($" · reward {RemoteSupport.Metric(r)}");
            if (Pick(_metrics, "loss") is { } loss && !(compact && reward is not null)) b.Append($" · loss {RemoteSupport.Metric(loss)}");
            if (Pick(_metrics, "tokens_per_second", "tokens/s", "tokens_per_s", "throughput/tokens_per_second") is { } tps)
                b.Append($" · {tps:0} tok/s");
            if (compact) return b.ToString();
            if (_phases.Count > 0)
                b.Append(" · ").AppendJoin(", ", _phases.Select(p => $"{p.Key} {p.Value:0.00}s"));
            if (Status is not RunStatus.Running) b.Append($" · {RemoteSupport.StatusName(Status)}");
            return b.ToString();
        }

        static double? Pick(IReadOnlyDictionary<string, double> m, params string[] keys)
        {
            foreach (var k in keys)
                if (m.TryGetValue(k, out var v)) return v;
            return null;
        }

        static string FormatMetrics(IReadOnlyDictionary<string, double> m, int max) =>
            m.Count == 0 ? "(no metrics)" : string.Join(", ", m.OrderBy(kv => kv.Key, StringComparer.Ordinal).Take(max)
                .Select(kv => $"{kv.Key} {RemoteSupport.Metric(kv.Value)}"));
    }
}
