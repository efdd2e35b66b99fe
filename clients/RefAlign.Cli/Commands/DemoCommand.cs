using System.CommandLine;
using RefAlign.Client;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign demo</c>: the main job on the embedded default. Writes the tiny policy, a tiny BERTScore encoder and the
/// shipped demo data, starts a local silo, pushes them to it as artifacts, launches a RefAlign run through the gRPC
/// client (its mean reward rises), then a short Sr-DPO run, pulls the trained RefAlign policy back, prints a summary,
/// and stops everything it started.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var work = new Option<string?>("--work") { Description = "Folder for models, data, runs and the silo log (kept). Default: a temporary folder, removed." };
        var refalignSteps = new Option<int>("--refalign-steps") { DefaultValueFactory = _ => 30 };
        var srdpoSteps = new Option<int>("--srdpo-steps") { DefaultValueFactory = _ => 12 };
        var json = CliSupport.JsonOption();
        var cmd = new Command("demo", "Run the main job end to end: local silo, a RefAlign run and a Sr-DPO run over gRPC.")
        {
            work, refalignSteps, srdpoSteps, json,
        };
        cmd.SetAction(async (r, ct) =>
        {
            var keep = r.GetValue(work);
            var dir = Path.GetFullPath(keep ?? Directory.CreateTempSubdirectory("refalign-demo-").FullName);
            var code = await CliSupport.RunAsync(() => RunAsync(dir, r.GetValue(refalignSteps), r.GetValue(srdpoSteps), r.GetValue(json), ct));
            // A failed demo keeps its folder (silo.log, runs/) for inspection.
            if (keep is null && code == 0) Directory.Delete(dir, recursive: true);
            else if (code != 0) Console.Error.WriteLine($"kept {dir} (silo.log, runs/) for inspection.");
            return code;
        });
        return cmd;
    }

    static async Task<int> RunAsync(string dir, int refalignSteps, int srdpoSteps, bool json, CancellationToken ct)
    {
        Directory.CreateDirectory(dir);
        CliSupport.Status(json, $"writing the tiny policy, the tiny BERTScore encoder and the demo data to {dir}", () =>
        {
            ModelPresets.Initialize(Path.Combine(dir, "policy"), "tiny", "llama", seed: 1);
            EncoderPresets.Initialize(Path.Combine(dir, "encoder"), "tiny-roberta", seed: 2);
            DemoData.WriteTo(Path.Combine(dir, "data"));
        });
        if (!json) Console.Error.WriteLine("starting a local silo…");
        await using var silo = await LocalSilo.StartAsync(dir, ct);
        using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(silo.GrpcAddress) });
        // The remote trainer's workflow: inputs go to the cluster as artifacts, the configs name them, results come back.
        foreach (var (path, name, kind) in Inputs)
        {
            var a = await client.PushArtifactAsync(Path.Combine(dir, path), name, kind, cancellation: ct);
            if (!json) AnsiConsole.MarkupLineInterpolated($"pushed [bold]{a.Name}[/] ({a.Kind}, {ArtifactCommand.Bytes(a.Size)})");
        }
        var results = new List<RunSummary>();
        foreach (var config in new[] { RefAlignConfig(refalignSteps), SrDpoConfig(srdpoSteps) })
        {
            var id = await client.StartRunAsync(config, ct);
            if (!json) AnsiConsole.MarkupLineInterpolated($"[bold]started run {id}[/]");
            results.Add(json ? await WaitAsync(client, id, ct) : await RunWatch.FollowAsync(client, id, 0, json: false, ct));
        }
        var rows = new List<(string Run, string Algorithm, string Status, string Steps, string Headline, string Eval)>();
        foreach (var run in results)
        {
            var steps = new List<IReadOnlyDictionary<string, double>>();
            await foreach (var e in client.WatchRunAsync(run.RunId, 0, ct))
                if (e.Kind == RunEventKind.Step) steps.Add(e.Metrics);
            var key = run.Algorithm == "refalign" ? "reward/mean" : "rewards/accuracies";
            double Avg(IEnumerable<IReadOnlyDictionary<string, double>> s) => s.Select(m => m.GetValueOrDefault(key)).DefaultIfEmpty(double.NaN).Average();
            var fifth = Math.Max(1, steps.Count / 5);
            var eval = run.LastMetrics.Where(m => m.Key.StartsWith("eval/", StringComparison.Ordinal)).Take(3);
            rows.Add((run.RunId, run.Algorithm, RemoteSupport.StatusName(run.Status), $"{run.Step}/{run.TotalSteps}",
                $"{key} {Avg(steps.Take(fifth)):F4} → {Avg(steps.TakeLast(fifth)):F4}", string.Join(", ", eval.Select(m => $"{m.Key} {m.Value:F3}"))));
        }
        var trained = Path.Combine(dir, "trained-policy");
        var pulled = results[0].LatestCheckpoint is null ? null : await client.PullRunAsync(results[0].RunId, "latest", trained, cancellation: ct);
        if (json) CliSupport.WriteJson(new { work = dir, trained_policy = pulled is null ? null : trained, runs = rows.Select(r => new { run = r.Run, algorithm = r.Algorithm, status = r.Status, steps = r.Steps, headline = r.Headline }) });
        else
        {
            var t = new Table().Title("demo summary").AddColumns("run", "algorithm", "status", "steps", "first fifth → last fifth");
            foreach (var r in rows) t.AddRow(Markup.Escape(r.Run), r.Algorithm, r.Status, r.Steps, Markup.Escape(r.Headline));
            AnsiConsole.Write(t);
            if (pulled is not null)
                AnsiConsole.MarkupLineInterpolated($"pulled the trained RefAlign policy ({pulled.Name}, {pulled.Files.Count} files, sha256 checked) into {trained}");
            foreach (var failed in results.Where(x => x.Error is not null))
                AnsiConsole.MarkupLineInterpolated($"[red]{failed.RunId}: {failed.Error}[/]");
            Console.Error.WriteLine("stopping the silo…");
        }
        return results.All(r => r.Status == RunStatus.Completed) ? 0 : 1;
    }

    /// <summary>What the demo pushes: folder or file under the work folder, artifact name, kind.</summary>
    static readonly (string Path, string Name, string Kind)[] Inputs =
    [
        ("policy", "models/demo-policy", "model"), ("encoder", "models/demo-encoder", "encoder"),
        ("data/references.jsonl", "datasets/demo-references", "data"), ("data/preferences.jsonl", "datasets/demo-preferences", "data"),
    ];

    static async Task<RunSummary> WaitAsync(RefAlignClient client, string id, CancellationToken ct)
    {
        await foreach (var _ in client.WatchRunAsync(id, 0, ct)) { }
        return await client.GetRunAsync(id, ct);
    }

    static string RefAlignConfig(int steps) => $$"""
        { "name": "demo-refalign", "algorithm": "refalign", "seed": 5,
          "policy": { "model": "artifact:models/demo-policy" },
          "data": { "path": "artifact:datasets/demo-references", "max_prompt_length": 48 },
          "optimizer": { "kind": "adamw", "learning_rate": 0.01, "warmup_steps": 0 },
          "refalign": { "reward_model": "artifact:models/demo-encoder", "num_samples": 4, "max_new_tokens": 12, "top_k": 50, "harmful_weight": 4.0 },
          "batch_size": 8, "micro_batch_size": 16, "max_steps": {{steps}}, "eval_every": {{Math.Max(1, steps / 2)}},
          "checkpoint_every": {{Math.Max(1, steps / 2)}}, "output_dir": "runs",
          "distributed": { "mode": "sync", "shards": 2 } }
        """;

    static string SrDpoConfig(int steps) => $$"""
        { "name": "demo-srdpo", "algorithm": "sr-dpo", "seed": 3,
          "policy": { "model": "artifact:models/demo-policy" },
          "data": { "path": "artifact:datasets/demo-preferences", "max_length": 96, "max_prompt_length": 48 },
          "optimizer": { "kind": "adamw", "learning_rate": 0.002, "warmup_steps": 2 },
          "preference": { "beta": 0.1, "lambda": 0.5 },
          "batch_size": 8, "micro_batch_size": 4, "max_steps": {{steps}}, "eval_every": {{Math.Max(1, steps / 2)}},
          "checkpoint_every": {{Math.Max(1, steps / 2)}}, "output_dir": "runs",
          "distributed": { "shards": 2 } }
        """;
}
