using System.CommandLine;
using System.Globalization;
using RefAlign.Client;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign artifact push|list|pull|rm</c>: a run's inputs and outputs kept by the cluster, so a trainer with only
/// the client and a silo's address can bring data and models in (<c>"artifact:&lt;name&gt;"</c> in a run config) and
/// take results out.
/// </summary>
internal static class ArtifactCommand
{
    public static Command Create()
    {
        var silo = RemoteSupport.SiloOption();
        var apiKey = RemoteSupport.ApiKeyOption();
        var cmd = new Command("artifact", "Push data and models to the cluster, list, pull and remove them (name them in run configs as artifact:<name>).")
        {
            silo, apiKey, RemoteSupport.CaCert,
        };
        cmd.Subcommands.Add(Push(silo, apiKey));
        cmd.Subcommands.Add(List(silo, apiKey));
        cmd.Subcommands.Add(Pull(silo, apiKey));
        cmd.Subcommands.Add(Remove(silo, apiKey));
        return cmd;
    }

    static Command Push(Option<string> silo, Option<string?> apiKey)
    {
        var path = new Argument<string>("path") { Description = "A model, encoder, checkpoint or report folder, or one data file." };
        var name = new Option<string>("--name") { Description = "The artifact's name, e.g. datasets/hh-small or models/tiny.", Required = true };
        var kind = new Option<string?>("--kind") { Description = "model, encoder, data, checkpoint or report (default: guessed from the folder)." };
        var json = CliSupport.JsonOption();
        var cmd = new Command("push", "Push a folder or file as an artifact; an interrupted push resumes where it stopped.") { path, name, kind, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            var source = r.GetValue(path)!;
            var k = r.GetValue(kind) ?? GuessKind(source);
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var a = await TransferView.RunAsync($"push {r.GetValue(name)}", r.GetValue(json),
                p => client.PushArtifactAsync(source, r.GetValue(name)!, k, p, ct));
            if (r.GetValue(json)) CliSupport.WriteJson(Json(a));
            else AnsiConsole.MarkupLineInterpolated($"[green]pushed[/] [bold]{a.Name}[/] ({a.Kind}, {a.Files.Count} files, {Bytes(a.Size)}, sha256 {a.Sha256[..12]}…): name it as artifact:{a.Name}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>A model folder has a causal LM's config, an encoder folder an encoder's; a file is data; else a report.</summary>
    internal static string GuessKind(string path)
    {
        if (File.Exists(path)) return "data";
        if (File.Exists(Path.Combine(path, "manifest.json"))) return "checkpoint";
        var config = Path.Combine(path, "config.json");
        if (!File.Exists(config)) return "report";
        var text = File.ReadAllText(config);
        return text.Contains("ForCausalLM", StringComparison.Ordinal) ? "model" : "encoder";
    }

    static Command List(Option<string> silo, Option<string?> apiKey)
    {
        var prefix = new Option<string>("--prefix") { Description = "Only names starting with this.", DefaultValueFactory = _ => "" };
        var json = CliSupport.JsonOption();
        var cmd = new Command("list", "The artifacts the cluster holds.") { prefix, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var l = await client.ListArtifactsAsync(r.GetValue(prefix)!, ct);
            if (r.GetValue(json))
            {
                CliSupport.WriteJson(new
                {
                    artifacts = l.Artifacts.Select(Json), stored_bytes = l.StoredBytes, quota_bytes = l.QuotaBytes,
                    pending = l.Pending.Select(p => new
                    {
                        name = p.Name, kind = p.Kind, size = p.Size, sha256 = p.Sha256, received_bytes = p.ReceivedBytes, updated = p.Updated, expires = p.Expires,
                    }),
                });
                return 0;
            }
            var t = new Table().AddColumns("name", "kind", "files", "size", "sha256", "created");
            foreach (var a in l.Artifacts)
                t.AddRow(Markup.Escape(a.Name), a.Kind, a.Files.Count.ToString(CultureInfo.InvariantCulture), Bytes(a.Size), a.Sha256[..12], a.Created.ToString("u", CultureInfo.InvariantCulture));
            AnsiConsole.Write(t);
            AnsiConsole.MarkupLineInterpolated($"{l.Artifacts.Count} artifacts, {Bytes(l.StoredBytes)} of {Bytes(l.QuotaBytes)} stored");
            if (l.Pending.Count > 0)
            {
                // Pushes that did not finish: resumable with the same push, removable with artifact rm <name>.
                var p = new Table().AddColumns("pending push", "kind", "received", "size", "sha256", "expires");
                foreach (var u in l.Pending)
                    p.AddRow(Markup.Escape(u.Name), u.Kind, Bytes(u.ReceivedBytes), Bytes(u.Size), u.Sha256[..12], u.Expires.ToString("u", CultureInfo.InvariantCulture));
                AnsiConsole.Write(p);
            }
            return 0;
        }));
        return cmd;
    }

    static Command Pull(Option<string> silo, Option<string?> apiKey)
    {
        var name = new Argument<string>("name") { Description = "The artifact's name." };
        var output = new Option<string>("--out") { Description = "A new or empty folder to write it into.", Required = true };
        var json = CliSupport.JsonOption();
        var cmd = new Command("pull", "Pull an artifact into a folder (checked against its SHA-256).") { name, output, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var p = await TransferView.RunAsync($"pull {r.GetValue(name)}", r.GetValue(json), pr => client.PullArtifactAsync(r.GetValue(name)!, r.GetValue(output)!, pr, ct));
            Report(p, r.GetValue(output)!, r.GetValue(json));
            return 0;
        }));
        return cmd;
    }

    static Command Remove(Option<string> silo, Option<string?> apiKey)
    {
        var name = new Argument<string>("name") { Description = "The artifact's name." };
        var json = CliSupport.JsonOption();
        var cmd = new Command("rm", "Remove an artifact or a pending push of that name (operator key); files a running run reads stay until it ends.") { name, json };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var a = await client.DeleteArtifactAsync(r.GetValue(name)!, ct);
            if (r.GetValue(json)) CliSupport.WriteJson(Json(a));
            else AnsiConsole.MarkupLineInterpolated($"removed [bold]{a.Name}[/]");
            return 0;
        }));
        return cmd;
    }

    /// <summary>What a pull wrote, as a line or as JSON (shared with <c>run pull</c>).</summary>
    internal static void Report(PulledArtifact p, string output, bool json)
    {
        if (json) CliSupport.WriteJson(new { name = p.Name, sha256 = p.Sha256, size = p.Size, out_dir = Path.GetFullPath(output), files = p.Files });
        else AnsiConsole.MarkupLineInterpolated($"[green]pulled[/] [bold]{p.Name}[/] ({p.Files.Count} files, {Bytes(p.Size)}, sha256 checked) into {output}");
    }

    static object Json(ArtifactInfo a) => new
    {
        name = a.Name, kind = a.Kind, size = a.Size, sha256 = a.Sha256, created = a.Created, path = a.Path,
        files = a.Files.Select(f => new { path = f.Path, size = f.Size, sha256 = f.Sha256 }),
    };

    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{n / 1024.0:F1} KiB",
        _ => $"{n} B",
    };
}

/// <summary>A transfer's progress: a bar with bytes and bytes/s on a terminal; nothing for scripts (<c>--json</c>, redirected output).</summary>
internal static class TransferView
{
    public static async Task<T> RunAsync<T>(string description, bool json, Func<IProgress<TransferProgress>?, Task<T>> body)
    {
        if (json || Console.IsErrorRedirected || Console.IsOutputRedirected) return await body(null);
        T result = default!;
        await AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(description));
                result = await body(new Progress<TransferProgress>(p =>
                {
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = p.Done;
                }));
                task.Value = task.MaxValue;
            });
        return result;
    }
}
