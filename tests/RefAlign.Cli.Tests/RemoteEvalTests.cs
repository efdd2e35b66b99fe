using System.Text.Json.Nodes;

namespace RefAlign.Cli.Tests;

/// <summary>
/// <c>refalign run eval</c> against a real silo process: the silo's generator, scorer, reference and learner grains
/// evaluate a finished run's base policy and checkpoint, and the numbers equal <c>refalign eval</c> of the same folders in
/// this process (generation and scoring batch differently across shards, so to ~1e-5, as training does).
/// </summary>
[Trait("Tier", "Process")]
public sealed class RemoteEvalTests(RemoteSiloFixture fixture) : IClassFixture<RemoteSiloFixture>
{
    string Root => fixture.Workspace.Root;

    Task<CliRunner.Result> Cli(params string[] args) =>
        CliRunner.RunAsync([.. args, "--silo", fixture.Silo.GrpcAddress, "--api-key", RemoteSiloFixture.Key]);

    /// <summary>Starts a run, follows it to its end; returns its id and its effective config (the silo's absolute paths).</summary>
    async Task<(string Id, JsonNode Config)> Finished(string json)
    {
        var start = await Cli("run", "start", "--config", TinyRuns.Write(Root, json), "--json");
        Assert.True(start.ExitCode == 0, start.Stderr);
        var id = start.Json["run_id"]!.GetValue<string>();
        var watch = await Cli("run", "watch", id);
        Assert.True(watch.ExitCode == 0, watch.Stdout + watch.Stderr);
        var status = await Cli("run", "status", id, "--json");
        Assert.Equal("completed", status.Json["status"]!.GetValue<string>());
        return (id, status.Json["config"]!);
    }

    /// <summary>The same evaluation in this process: eval.json over the run's config and the same folders.</summary>
    JsonNode Local(JsonNode config, string[] models, string output, JsonObject settings)
    {
        var runConfig = Path.Combine(Root, $"run-config-{Guid.NewGuid():N}.json");
        File.WriteAllText(runConfig, config.ToJsonString());
        settings["run_config"] = runConfig;
        settings["models"] = new JsonArray([.. models.Select(m => (JsonNode)m)]);
        settings["output_dir"] = output;
        var evalFile = Path.Combine(Root, $"eval-{Guid.NewGuid():N}.json");
        File.WriteAllText(evalFile, settings.ToJsonString());
        var r = CliRunner.Run("eval", "--config", evalFile, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        return JsonNode.Parse(File.ReadAllText(Path.Combine(output, "eval.json")))!;
    }

    static void AssertSameMetrics(JsonNode expected, JsonNode actual)
    {
        var (e, a) = (expected["models"]!.AsArray(), actual["models"]!.AsArray());
        Assert.Equal(e.Count, a.Count);
        for (var i = 0; i < e.Count; i++)
        {
            var (em, am) = (e[i]!["metrics"]!.AsObject(), a[i]!["metrics"]!.AsObject());
            Assert.Equal(em.Select(kv => kv.Key).Order(), am.Select(kv => kv.Key).Order());
            foreach (var (key, value) in em)
                Assert.True(Math.Abs(value!.GetValue<double>() - am[key]!.GetValue<double>()) < 1e-5,
                    $"model {i} {key}: local {value} cluster {am[key]}");
        }
    }

    [Fact]
    public async Task A_lora_runs_checkpoint_and_its_base_evaluated_through_the_cluster_equal_the_local_eval()
    {
        var (id, config) = await Finished(TinyRuns.RefAlign("cli-eval", steps: 4, checkpointEvery: 2, shards: 2)
            .Replace("\"policy\": { \"model\": \"policy\" }", "\"policy\": { \"model\": \"policy\", \"lora\": { \"rank\": 4, \"alpha\": 16 } }", StringComparison.Ordinal)
            .Replace("\"limit\": 24", "\"limit\": 24, \"eval_fraction\": 0.25", StringComparison.Ordinal));
        var remoteOut = Path.Combine(Root, $"remote-eval-{id}");
        var r = await Cli("run", "eval", id, "--model", "base", "--model", "latest", "--examples", "5", "--num-samples", "2", "--seed", "7",
            "--correct-threshold", "0.5", "--bootstrap", "200", "--out", remoteOut, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("[2/2] step-000004: 5/5 examples", r.Stderr); // progress lines from the silo's updates
        Assert.Equal(["base", "step-000004"], r.Json["models"]!.AsArray().Select(m => m!["model"]!.GetValue<string>()));
        var checkpoint = r.Json["models"]![1]!["path"]!.GetValue<string>();
        Assert.True(Directory.Exists(Path.Combine(checkpoint, "adapter")), checkpoint);

        var remote = JsonNode.Parse(File.ReadAllText(Path.Combine(remoteOut, "eval.json")))!;
        var local = Local(config, [config["policy"]!["model"]!.GetValue<string>(), checkpoint], Path.Combine(Root, $"local-eval-{id}"),
            new JsonObject { ["examples"] = 5, ["num_samples"] = 2, ["seed"] = 7, ["correct_threshold"] = 0.5, ["bootstrap"] = 200 });
        AssertSameMetrics(local, remote);
        Assert.Equal(2 * 5 * 2, File.ReadLines(Path.Combine(remoteOut, "samples.jsonl")).Count());
        // The answers themselves: the trained adapters reached the generators (the checkpoint's differ from the base's).
        static List<string> Answers(string folder, int model) => [.. File.ReadLines(Path.Combine(folder, "samples.jsonl"))
            .Select(l => JsonNode.Parse(l)!).GroupBy(s => s["model"]!.GetValue<string>()).ElementAt(model)
            .OrderBy(s => s["prompt_id"]!.GetValue<int>()).ThenBy(s => s["sample"]!.GetValue<int>()).Select(s => s["answer"]!.GetValue<string>())];
        Assert.Equal(Answers(Path.Combine(Root, $"local-eval-{id}"), 1), Answers(remoteOut, 1));
        Assert.NotEqual(Answers(remoteOut, 0), Answers(remoteOut, 1));
        var side = Assert.Single(remote["side_by_side"]!.AsArray())!;
        Assert.Equal(local["side_by_side"]![0]!["win_rate"]!.GetValue<double>(), side["win_rate"]!.GetValue<double>(), 9);
        Assert.Contains("## Side by side", File.ReadAllText(Path.Combine(remoteOut, "report.md")));
        // The evaluation cleaned up after itself: no eval work folder is left in the run's output.
        Assert.Empty(Directory.GetDirectories(config["output_dir"]!.GetValue<string>(), "*.eval-*", SearchOption.AllDirectories));
        // The report stays on the cluster: whoever pulls the run's results gets the same files.
        var pulled = await Cli("run", "pull", id, "--eval", "--out", Path.Combine(Root, $"pulled-eval-{id}"), "--json");
        Assert.True(pulled.ExitCode == 0, pulled.Stderr);
        foreach (var file in new[] { "eval.json", "samples.jsonl", "report.md" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(remoteOut, file)), File.ReadAllBytes(Path.Combine(Root, $"pulled-eval-{id}", file)));
    }

    [Fact]
    public async Task A_preference_runs_checkpoint_through_the_cluster_equals_the_local_eval()
    {
        var (id, config) = await Finished(TinyRuns.SrDpo("cli-eval-pref", steps: 2, checkpointEvery: 2)
            .Replace("\"limit\": 48", "\"limit\": 48, \"eval_fraction\": 0.2", StringComparison.Ordinal));
        var remoteOut = Path.Combine(Root, $"remote-eval-{id}");
        var r = await Cli("run", "eval", id, "--model", "step-2", "--out", remoteOut, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var checkpoint = r.Json["models"]![0]!["path"]!.GetValue<string>();
        var local = Local(config, [checkpoint], Path.Combine(Root, $"local-eval-{id}"), []);
        var remote = JsonNode.Parse(File.ReadAllText(Path.Combine(remoteOut, "eval.json")))!;
        AssertSameMetrics(local, remote);
        Assert.NotNull(remote["models"]![0]!["metrics"]!["eval/refine/marginal"]);
    }

    [Fact]
    public async Task Bad_requests_name_the_field_and_a_running_run_is_refused()
    {
        var (id, _) = await Finished(TinyRuns.RefAlign("cli-eval-bad", steps: 2, checkpointEvery: 2));
        var noStep = await Cli("run", "eval", id, "--model", "step-99", "--out", Path.Combine(Root, "x"));
        Assert.Equal(2, noStep.ExitCode);
        Assert.Contains("field 'models[0]'", noStep.Stderr);
        Assert.Contains("step-000002", noStep.Stderr); // what the run does have
        var path = await Cli("run", "eval", id, "--model", "/etc", "--out", Path.Combine(Root, "x"));
        Assert.Contains("error: invalid argument: field 'models[0]' is '/etc'", path.Stderr);
        var samples = await Cli("run", "eval", id, "--num-samples", "0", "--out", Path.Combine(Root, "x"));
        Assert.Contains("field 'num_samples'", samples.Stderr);

        var start = await Cli("run", "start", "--config", TinyRuns.Write(Root, TinyRuns.RefAlign("cli-eval-busy", steps: 200)), "--json");
        var busy = start.Json["run_id"]!.GetValue<string>();
        var refused = await Cli("run", "eval", busy, "--out", Path.Combine(Root, "x"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("failed precondition", refused.Stderr);
        Assert.Contains("evaluate it once it has stopped, completed or failed", refused.Stderr);
        await Cli("run", "stop", busy);
    }

    [Fact]
    public async Task Sft_then_sr_dpo_chained_by_run_id_on_the_cluster()
    {
        var sft = TinyRuns.SrDpo("cli-sft", steps: 4, checkpointEvery: 2)
            .Replace("\"sr-dpo\"", "\"sft\"", StringComparison.Ordinal)
            .Replace("\"preference\": { \"beta\": 0.1, \"lambda\": 0.5 },", "", StringComparison.Ordinal)
            .Replace("\"limit\": 48", "\"limit\": 48, \"eval_fraction\": 0.2", StringComparison.Ordinal);
        var (sftId, _) = await Finished(sft);
        // The SFT stage evaluated through the cluster: its held-out loss fell below the base model's.
        var evalOut = Path.Combine(Root, $"remote-eval-{sftId}");
        var eval = await Cli("run", "eval", sftId, "--model", "base", "--model", "latest", "--out", evalOut, "--json");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        var losses = eval.Json["models"]!.AsArray().Select(m => m!["metrics"]!["eval/loss"]!.GetValue<double>()).ToList();
        Assert.True(losses[1] < losses[0], $"held-out loss base {losses[0]:F4}, SFT {losses[1]:F4}");
        var sftCheckpoint = eval.Json["models"]![1]!["path"]!.GetValue<string>();

        var (id, config) = await Finished(TinyRuns.SrDpo("cli-chained", steps: 2)
            .Replace("\"model\": \"policy\"", $"\"model\": \"run:{sftId}\"", StringComparison.Ordinal));
        Assert.Equal(Path.Combine(sftCheckpoint, "policy"), config["policy"]!["model"]!.GetValue<string>());
        var steps = (await Cli("run", "watch", id, "--json")).JsonLines.Where(e => e["kind"]!.GetValue<string>() == "step").ToList();
        // Policy = reference = the SFT model at the first step: the loss is log 2.
        Assert.Equal(Math.Log(2), steps[0]["metrics"]!["loss"]!.GetValue<double>(), 4);

        var unknown = await Cli("run", "start", "--config", TinyRuns.Write(Root, TinyRuns.SrDpo("cli-chained-bad", steps: 2)
            .Replace("\"model\": \"policy\"", "\"model\": \"run:nope\"", StringComparison.Ordinal)));
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("field 'policy.model' names run 'nope', which this cluster does not know", unknown.Stderr);
    }

    [Fact]
    public async Task Metrics_serves_prometheus_series_of_a_run_with_its_run_id()
    {
        var (id, _) = await Finished(TinyRuns.RefAlign("cli-metrics", steps: 2, checkpointEvery: 2));
        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://127.0.0.1:{fixture.Silo.HttpPort}/metrics");
        var label = $"refalign_run_id=\"{id}\"";
        bool Has(string series) => text.Split('\n').Any(l => l.StartsWith(series, StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal));
        Assert.True(Has("refalign_step_duration_seconds_count"), "no step duration series for the run");
        Assert.True(Has("refalign_reward_count"), "no reward series for the run");
        Assert.True(Has("refalign_phase_duration_seconds_bucket"), "no phase duration series for the run");
        Assert.Contains("# TYPE refalign_step_duration_seconds histogram", text);
        // The count of step durations of this run is its two steps.
        var count = text.Split('\n').First(l => l.StartsWith("refalign_step_duration_seconds_count", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal));
        Assert.Equal("2", count[(count.LastIndexOf('}') + 1)..].Trim().Split(' ')[0]);

        // The run's output folder holds its metrics.jsonl and TensorBoard events, every step's scalars in them.
        var output = (await Cli("run", "status", id, "--json")).Json["config"]!["output_dir"]!.GetValue<string>();
        var events = TensorBoardEvents.Read(Assert.Single(Directory.GetFiles(output, "events.out.tfevents.*")));
        Assert.Equal([1L, 2L], events.Scalars.Where(x => x.Tag == "reward/mean").Select(x => x.Step));
        Assert.Equal(2, File.ReadLines(Path.Combine(output, "metrics.jsonl")).Count(l => l.Contains("\"kind\":\"step\"", StringComparison.Ordinal)));

        // Every series the shipped Grafana board queries is one this silo exports.
        var board = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "infra", "grafana", "refalign.json"));
        var queried = System.Text.RegularExpressions.Regex.Matches(board, @"\b(refalign|orleans|dotnet)_[a-z_]+").Select(m => m.Value)
            .Where(n => n != "refalign_run_id" && n != "refalign_phase")
            .Select(n => System.Text.RegularExpressions.Regex.Replace(n, "_(sum|count|bucket)$", "")).Distinct().ToList();
        Assert.NotEmpty(queried);
        Assert.All(queried, n => Assert.Contains($"# TYPE {n} ", text));
    }
}
