using System.CommandLine;
using System.Runtime.InteropServices;
using Grpc.Core;
using RefAlign.Client;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign run start|watch|status|stop|resume|list|eval|pull</c>: runs on a silo, through the gRPC control API.
/// </summary>
internal static class RunCommands
{
    public static Command Create()
    {
        var silo = RemoteSupport.SiloOption();
        var apiKey = RemoteSupport.ApiKeyOption();
        var run = new Command("run", "Start, watch and steer training runs on a silo (gRPC control API).") { silo, apiKey, RemoteSupport.CaCert };
        run.Subcommands.Add(Start(silo, apiKey));
        run.Subcommands.Add(Watch(silo, apiKey));
        run.Subcommands.Add(Status(silo, apiKey));
        run.Subcommands.Add(Steer("stop", "Ask a run to stop after its current step.", silo, apiKey, (c, id, ct) => c.StopRunAsync(id, ct)));
        run.Subcommands.Add(Steer("resume", "Resume a stopped run from its latest checkpoint.", silo, apiKey, (c, id, ct) => c.ResumeRunAsync(id, ct)));
        run.Subcommands.Add(List(silo, apiKey));
        run.Subcommands.Add(RunEvalCommand.Create(silo, apiKey));
        run.Subcommands.Add(RunPullCommand.Create(silo, apiKey));
        return run;
    }

    static Argument<string> RunIdArgument() => new("id") { Description = "The run id (from `refalign run start` or `run list`)." };

    static Command Start(Option<string> silo, Option<string?> apiKey)
    {
        var config = new Option<string>("--config") { Description = "Run config (JSON), as `refalign train` reads it.", Required = true };
        var json = CliSupport.JsonOption();
        var cmd = new Command("start", "Validate a run config on the silo and start the run.") { config, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            var path = r.GetValue(config)!;
            if (!File.Exists(path)) throw new IOException($"run config file '{path}' does not exist.");
            var text = await File.ReadAllTextAsync(path, ct);
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var id = await client.StartRunAsync(text, ct);
            if (r.GetValue(json))
                CliSupport.WriteJson(new { run_id = id });
            else
            {
                AnsiConsole.MarkupLineInterpolated($"[green]started[/] run [bold]{id}[/]");
                AnsiConsole.MarkupLineInterpolated($"watch it with: refalign run watch {id}{SiloHint(r, silo)}");
            }
            return 0;
        }));
        return cmd;
    }

    static Command Watch(Option<string> silo, Option<string?> apiKey)
    {
        var id = RunIdArgument();
        var after = new Option<long>("--after") { Description = "Only events after this sequence number (0 = from the start).", DefaultValueFactory = _ => 0 };
        var json = CliSupport.JsonOption();
        json.Description = "Write one JSON object per event (JSON Lines) to stdout.";
        var cmd = new Command("watch", "Follow a run's progress until it ends; Ctrl-C detaches and the run goes on.") { id, after, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var runId = r.GetValue(id)!;
            // Program's InvokeAsync() installs no Ctrl-C handling (System.CommandLine 2.0 does only when given a
            // ProcessTerminationTimeout), so the watch takes SIGINT itself: it detaches instead of killing the process.
            using var detach = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
            {
                c.Cancel = true;
                detach.Cancel();
            });
            try
            {
                var final = await RunWatch.FollowAsync(client, runId, r.GetValue(after), r.GetValue(json), detach.Token);
                return final.Status == RunStatus.Failed ? 1 : 0;
            }
            catch (Exception e) when (detach.IsCancellationRequested && e is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
            {
                Console.Error.WriteLine($"detached from run {runId}; it goes on. Re-attach with: refalign run watch {runId}{SiloHint(r, silo)}");
                return 130;
            }
        }));
        return cmd;
    }

    static Command Status(Option<string> silo, Option<string?> apiKey)
    {
        var id = RunIdArgument();
        var json = CliSupport.JsonOption();
        var cmd = new Command("status", "Show a run's state, progress and last metrics.") { id, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var run = await client.GetRunAsync(r.GetValue(id)!, ct);
            if (r.GetValue(json)) CliSupport.WriteJson(RemoteSupport.RunJson(run));
            else WriteRun(run);
            return 0;
        }));
        return cmd;
    }

    static Command Steer(string verb, string description, Option<string> silo, Option<string?> apiKey,
        Func<RefAlignClient, string, CancellationToken, Task<RunSummary>> call)
    {
        var id = RunIdArgument();
        var json = CliSupport.JsonOption();
        var cmd = new Command(verb, description) { id, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var run = await call(client, r.GetValue(id)!, ct);
            if (r.GetValue(json)) CliSupport.WriteJson(RemoteSupport.RunJson(run));
            else AnsiConsole.MarkupLineInterpolated($"run [bold]{run.RunId}[/]: {RemoteSupport.StatusName(run.Status)} at step {run.Step}/{run.TotalSteps}");
            return 0;
        }));
        return cmd;
    }

    static Command List(Option<string> silo, Option<string?> apiKey)
    {
        var json = CliSupport.JsonOption();
        var cmd = new Command("list", "List the runs the cluster knows.") { json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var runs = await client.ListRunsAsync(ct);
            if (r.GetValue(json))
            {
                CliSupport.WriteJson(new { runs = runs.Select(RemoteSupport.RunJson) });
                return 0;
            }
            if (runs.Count == 0)
            {
                Console.WriteLine("no runs.");
                return 0;
            }
            var table = new Table().AddColumns("id", "name", "algorithm", "status", "step", "weights", "created");
            foreach (var x in runs.OrderBy(x => x.CreatedAt))
                table.AddRow(Markup.Escape(x.RunId), Markup.Escape(x.Name), Markup.Escape(x.Algorithm), StatusMarkup(x.Status),
                    $"{x.Step}/{x.TotalSteps}", $"v{x.WeightVersion}", x.CreatedAt.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss"));
            AnsiConsole.Write(table);
            return 0;
        }));
        return cmd;
    }

    static void WriteRun(RunSummary r)
    {
        var grid = new Grid().AddColumn().AddColumn();
        grid.AddRow("run", Markup.Escape(r.RunId));
        grid.AddRow("name", Markup.Escape(r.Name));
        grid.AddRow("algorithm", Markup.Escape(r.Algorithm));
        grid.AddRow("status", StatusMarkup(r.Status));
        grid.AddRow("step", $"{r.Step}/{r.TotalSteps}");
        grid.AddRow("weight version", r.WeightVersion.ToString());
        grid.AddRow("checkpoint", Markup.Escape(r.LatestCheckpoint ?? "-"));
        grid.AddRow("created", r.CreatedAt.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss zzz"));
        if (r.Error is not null) grid.AddRow("[red]error[/]", Markup.Escape(r.Error));
        foreach (var (k, v) in r.LastMetrics.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            grid.AddRow(Markup.Escape(k), RemoteSupport.Metric(v));
        AnsiConsole.Write(grid);
    }

    static string StatusMarkup(RunStatus s) => s switch
    {
        RunStatus.Running => "[blue]running[/]",
        RunStatus.Completed => "[green]completed[/]",
        RunStatus.Failed => "[red]failed[/]",
        RunStatus.Stopping or RunStatus.Stopped => $"[yellow]{RemoteSupport.StatusName(s)}[/]",
        _ => RemoteSupport.StatusName(s),
    };

    /// <summary>The --silo part of a suggested command, when the user is not on the default silo.</summary>
    static string SiloHint(ParseResult r, Option<string> silo) =>
        r.GetValue(silo) is { } s && s != RemoteSupport.DefaultSilo ? $" --silo {s}" : "";
}
