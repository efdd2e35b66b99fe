using System.Text.Json.Nodes;
using RefAlign.Compute.Rewards;

namespace RefAlign.Cli.Tests;

/// <summary>
/// <c>refalign eval</c> as a trainer runs it after training: a LoRA checkpoint against its base model on the run's
/// held-out prompts, and a preference run's held-out metrics. Every number in eval.json is recomputed from
/// samples.jsonl; the plots are real PNG files.
/// </summary>
public sealed class EvalVerbTests(TrainVerbFixture fx) : IClassFixture<TrainVerbFixture>, IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("refalign-eval-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string Write(string name, JsonNode node)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, node.ToJsonString());
        return path;
    }

    static void AssertPng(string file) =>
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(file).Take(4));

    [Fact]
    public void A_lora_checkpoint_against_its_base_gets_f1_intervals_calibration_and_a_win_rate_that_samples_jsonl_reproduces()
    {
        var run = Write("run.json", new JsonObject
        {
            ["name"] = "eval-refalign", ["algorithm"] = "refalign", ["seed"] = 5,
            ["policy"] = new JsonObject { ["model"] = fx.Policy, ["lora"] = new JsonObject { ["rank"] = 4, ["alpha"] = 8 } },
            ["data"] = new JsonObject { ["path"] = fx.References, ["max_prompt_length"] = 32, ["eval_fraction"] = 0.2 },
            ["optimizer"] = new JsonObject { ["kind"] = "adamw", ["learning_rate"] = 1e-2, ["warmup_steps"] = 0 },
            ["refalign"] = new JsonObject { ["reward_model"] = fx.Encoder, ["num_samples"] = 2, ["max_new_tokens"] = 8, ["confidence"] = true },
            ["batch_size"] = 4, ["micro_batch_size"] = 4, ["max_steps"] = 2, ["eval_every"] = 0, ["checkpoint_every"] = 2,
            ["output_dir"] = Path.Combine(_dir, "run"),
        });
        var train = CliRunner.Run("train", "--config", run, "--json");
        Assert.True(train.ExitCode == 0, train.Stderr);
        var checkpoint = Path.Combine(_dir, "run", "checkpoints", "step-000002");
        Assert.True(Directory.Exists(Path.Combine(checkpoint, "adapter")));

        var eval = Write("eval.json", new JsonObject
        {
            ["run_config"] = "run.json", ["models"] = new JsonArray(fx.Policy, checkpoint), ["output_dir"] = "out",
            ["examples"] = 6, ["num_samples"] = 3, ["seed"] = 7, ["correct_threshold"] = 0.5, ["bootstrap"] = 500,
        });
        var r = CliRunner.Run("eval", "--config", eval, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("examples", r.Stderr); // progress, on stderr

        var output = Path.Combine(_dir, "out");
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "eval.json")))!;
        var models = report["models"]!.AsArray();
        Assert.Equal(2, models.Count);
        var samples = File.ReadLines(Path.Combine(output, "samples.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(2 * 6 * 3, samples.Count);

        foreach (var model in models)
        {
            var name = model!["model"]!.GetValue<string>();
            var metrics = model["metrics"]!;
            var mine = samples.Where(s => s["model"]!.GetValue<string>() == name).ToList();
            Assert.Equal(6 * 3, mine.Count);
            double M(string key) => metrics[key]!.GetValue<double>();
            Assert.Equal(mine.Average(s => s["f1"]!.GetValue<double>()), M("bertscore/f1"), 12);
            Assert.Equal(mine.Average(s => s["length"]!.GetValue<double>()), M("response_length/mean"), 12);
            var confidence = mine.Select(s => s["confidence"]!.GetValue<double>()).ToList();
            var correct = mine.Select(s => s["correct"]!.GetValue<bool>()).ToList();
            Assert.All(mine, s => Assert.Equal(s["f1"]!.GetValue<double>() >= 0.5, s["correct"]!.GetValue<bool>()));
            Assert.Equal(CalibrationMetrics.ExpectedCalibrationError(confidence, correct, 10), M("calibration/ece"), 12);
            if (correct.Distinct().Count() == 2) Assert.Equal(CalibrationMetrics.Auroc(confidence, correct), M("calibration/auroc"), 12);
            else Assert.Contains("AUROC is undefined", model["notes"]!.ToJsonString());
            var interval = model["f1_interval"]!;
            Assert.InRange(M("bertscore/f1"), interval["low"]!.GetValue<double>(), interval["high"]!.GetValue<double>());
        }
        // Both models answered the same prompts with the same sampling keys; the win rate counts every prompt once.
        var prompts = samples.GroupBy(s => s["model"]!.GetValue<string>()).Select(g => g.Select(s => s["prompt_id"]!.GetValue<int>()).Distinct().Order().ToList()).ToList();
        Assert.Equal(prompts[0], prompts[1]);
        var side = Assert.Single(report["side_by_side"]!.AsArray())!;
        Assert.Equal(6, side["wins"]!.GetValue<int>() + side["ties"]!.GetValue<int>() + side["losses"]!.GetValue<int>());
        Assert.Equal((side["wins"]!.GetValue<int>() + 0.5 * side["ties"]!.GetValue<int>()) / 6, side["win_rate"]!.GetValue<double>(), 12);

        var md = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("## Side by side", md);
        foreach (var png in new[] { "f1_0.png", "f1_1.png", "reliability_0.png", "reliability_1.png" })
        {
            Assert.Contains($"]({png})", md);
            AssertPng(Path.Combine(output, png));
        }
    }

    [Fact]
    public void A_run_with_a_rule_reward_reports_the_accuracy_of_its_answers()
    {
        var data = RefAlign.Presets.VerifiableData.WriteTo(_dir);
        var run = Write("verifiable-run.json", new JsonObject
        {
            ["name"] = "eval-verifiable", ["algorithm"] = "grpo", ["seed"] = 5,
            ["policy"] = new JsonObject { ["model"] = fx.Policy },
            ["data"] = new JsonObject { ["path"] = data, ["max_prompt_length"] = 32, ["eval_fraction"] = 0.2 },
            ["optimizer"] = new JsonObject { ["kind"] = "adamw", ["learning_rate"] = 1e-2, ["warmup_steps"] = 0 },
            ["refalign"] = new JsonObject { ["num_samples"] = 4, ["max_new_tokens"] = 1, ["rewards"] = new JsonArray(new JsonObject { ["kind"] = "rule" }) },
            ["batch_size"] = 8, ["micro_batch_size"] = 32, ["max_steps"] = 2, ["eval_every"] = 0, ["checkpoint_every"] = 2,
            ["output_dir"] = Path.Combine(_dir, "verifiable"),
        });
        var train = CliRunner.Run("train", "--config", run, "--json");
        Assert.True(train.ExitCode == 0, train.Stderr);
        var eval = Write("verifiable-eval.json", new JsonObject
        {
            ["run_config"] = "verifiable-run.json", ["models"] = new JsonArray(fx.Policy, Path.Combine(_dir, "verifiable", "checkpoints", "step-000002")),
            ["output_dir"] = "verifiable-out", ["examples"] = 10, ["num_samples"] = 4,
        });
        var r = CliRunner.Run("eval", "--config", eval, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var output = Path.Combine(_dir, "verifiable-out");
        // A sample's prompt id is its line in the data file.
        var answers = File.ReadLines(data).Select(l => JsonNode.Parse(l)!["answer"]!.GetValue<string>()).ToList();
        var samples = File.ReadLines(Path.Combine(output, "samples.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        foreach (var model in JsonNode.Parse(File.ReadAllText(Path.Combine(output, "eval.json")))!["models"]!.AsArray())
        {
            var metrics = model!["metrics"]!;
            var mine = samples.Where(s => s["model"]!.GetValue<string>() == model["model"]!.GetValue<string>()).ToList();
            Assert.Equal(40, mine.Count);
            // Correct: the last number of the answer is the data's; accuracy is their share. No BERTScore in a rule run.
            Assert.All(mine, s => Assert.Equal(s["correct"]!.GetValue<bool>(),
                System.Text.RegularExpressions.Regex.Matches(s["answer"]!.GetValue<string>(), @"-?\d+(?:\.\d+)?") is { Count: > 0 } m
                && m[^1].Value == answers[s["prompt_id"]!.GetValue<int>()]));
            Assert.All(mine, s => Assert.Equal(s["correct"]!.GetValue<bool>() ? 1.0 : 0.0, s["reward"]!.GetValue<double>()));
            Assert.Equal(mine.Count(s => s["correct"]!.GetValue<bool>()) / 40.0, metrics["accuracy"]!.GetValue<double>(), 12);
            Assert.Null(metrics["bertscore/f1"]);
        }
        Assert.Contains("correct when the rule reward finds the data's answer", File.ReadAllText(Path.Combine(output, "report.md")));
    }

    [Fact]
    public void A_preference_run_reports_accuracy_prompted_accuracy_marginal_and_margins_on_its_eval_split()
    {
        Write("pref-run.json", new JsonObject
        {
            ["name"] = "eval-srdpo", ["algorithm"] = "sr-dpo",
            ["policy"] = new JsonObject { ["model"] = fx.Policy },
            ["data"] = new JsonObject { ["path"] = fx.Preferences, ["max_length"] = 64, ["max_prompt_length"] = 32, ["eval_fraction"] = 0.1 },
            ["eval_examples"] = 8, ["output_dir"] = Path.Combine(_dir, "pref-run"),
        });
        var eval = Write("pref-eval.json", new JsonObject { ["run_config"] = "pref-run.json", ["models"] = new JsonArray(fx.Policy), ["output_dir"] = "pref-out" });
        var r = CliRunner.Run("eval", "--config", eval, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var metrics = r.Json["models"]![0]!["metrics"]!;
        foreach (var key in new[] { "eval/rewards/accuracies", "eval/rewards/prompted_accuracies", "eval/refine/marginal", "eval/rewards/margins" })
            Assert.NotNull(metrics[key]);
        // The policy is its own reference here: every implicit reward, and so the marginal, is zero (up to float32
        // rounding of summed log-probs, which the reference computes in other batches).
        var marginal = metrics["eval/refine/marginal"]!.GetValue<double>();
        Assert.True(Math.Abs(marginal) < 1e-4, $"marginal {marginal}");
        Assert.Empty(File.ReadAllText(Path.Combine(_dir, "pref-out", "samples.jsonl")));
    }

    [Fact]
    public void Bad_eval_configs_name_the_field_or_the_folder()
    {
        var missing = Write("bad1.json", new JsonObject { ["run_config"] = "nope.json", ["models"] = new JsonArray(fx.Policy) });
        var r = CliRunner.Run("eval", "--config", missing);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("field 'run_config'", r.Stderr);

        Write("run-ok.json", new JsonObject { ["name"] = "x", ["algorithm"] = "dpo", ["policy"] = new JsonObject { ["model"] = fx.Policy }, ["data"] = new JsonObject { ["path"] = fx.Preferences } });
        var notAModel = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var bad = Write("bad2.json", new JsonObject { ["run_config"] = "run-ok.json", ["models"] = new JsonArray(fx.Policy, notAModel) });
        r = CliRunner.Run("eval", "--config", bad);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"{notAModel}: is neither an HF model folder", r.Stderr);

        var typo = Write("bad3.json", new JsonObject { ["run_config"] = "run-ok.json", ["models"] = new JsonArray(fx.Policy), ["sampels"] = 3 });
        r = CliRunner.Run("eval", "--config", typo);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("sampels", r.Stderr);
    }
}
