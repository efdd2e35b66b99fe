using System.Text.Json.Nodes;

namespace RefAlign.Cli.Tests;

/// <summary>
/// The papers' two stages as two commands: an SFT run, then a Sr-DPO run whose policy and reference are the SFT run's
/// final checkpoint (<c>"model": "run:&lt;output folder&gt;"</c>). A LoRA SFT checkpoint is merged into its base once;
/// the merged folder scores exactly as the SFT run evaluated itself.
/// </summary>
public sealed class StageChainingTests(TrainVerbFixture fx) : IClassFixture<TrainVerbFixture>, IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("refalign-stages-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string Write(string name, JsonNode node)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, node.ToJsonString());
        return path;
    }

    [Fact]
    public void Sft_then_sr_dpo_from_its_final_checkpoint_is_two_commands()
    {
        var sftOut = Path.Combine(_dir, "sft");
        var sft = Write("sft.json", new JsonObject
        {
            ["name"] = "stage1", ["algorithm"] = "sft", ["seed"] = 2,
            ["policy"] = new JsonObject { ["model"] = fx.Policy, ["lora"] = new JsonObject { ["rank"] = 8, ["alpha"] = 16 } },
            ["data"] = new JsonObject { ["path"] = fx.Preferences, ["max_length"] = 96, ["max_prompt_length"] = 48, ["eval_fraction"] = 0.1 },
            ["optimizer"] = new JsonObject { ["kind"] = "adamw", ["learning_rate"] = 3e-2, ["warmup_steps"] = 0 },
            ["batch_size"] = 8, ["micro_batch_size"] = 8, ["max_steps"] = 10, ["eval_every"] = 5, ["eval_examples"] = 8, ["checkpoint_every"] = 5,
            ["output_dir"] = sftOut,
        });
        var stage1 = CliRunner.Run("train", "--config", sft, "--json");
        Assert.True(stage1.ExitCode == 0, stage1.Stderr);
        Assert.Equal("sft", stage1.Json["algorithm"]!.GetValue<string>());
        Assert.True(stage1.Json["last_fifth_mean"]!.GetValue<double>() < stage1.Json["first_fifth_mean"]!.GetValue<double>());
        var sftEvalLoss = stage1.Json["final_eval"]!["eval/loss"]!.GetValue<double>();

        var srdpo = Write("srdpo.json", new JsonObject
        {
            ["name"] = "stage2", ["algorithm"] = "sr-dpo", ["seed"] = 3,
            ["policy"] = new JsonObject { ["model"] = $"run:{sftOut}" },
            ["data"] = new JsonObject { ["path"] = fx.Preferences, ["max_length"] = 96, ["max_prompt_length"] = 48, ["eval_fraction"] = 0.1 },
            ["optimizer"] = new JsonObject { ["kind"] = "adamw", ["learning_rate"] = 2e-3, ["warmup_steps"] = 0 },
            ["batch_size"] = 8, ["micro_batch_size"] = 8, ["max_steps"] = 3, ["eval_every"] = 0, ["checkpoint_every"] = 0,
            ["output_dir"] = Path.Combine(_dir, "srdpo"),
        });
        var stage2 = CliRunner.Run("train", "--config", srdpo, "--json");
        Assert.True(stage2.ExitCode == 0, stage2.Stderr);

        // The policy (and so the reference) is the SFT run's final checkpoint, its adapters merged into the base once.
        var merged = Path.Combine(sftOut, "checkpoints", "step-000010", "merged");
        var used = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "srdpo", "run_config.json")))!["policy"]!;
        Assert.Equal(merged, used["model"]!.GetValue<string>());
        Assert.Null(used["reference_model"]);
        Assert.True(File.Exists(Path.Combine(merged, "tokenizer.model")));
        // Policy = reference at step 1: every implicit reward is zero and the loss is log 2.
        var first = JsonNode.Parse(File.ReadLines(Path.Combine(_dir, "srdpo", "metrics.jsonl")).First(l => l.Contains("\"loss\"", StringComparison.Ordinal)))!;
        Assert.Equal(Math.Log(2), first["metrics"]!["loss"]!.GetValue<double>(), 4);

        // The merged folder is the SFT model: its held-out loss through `refalign eval` is the one the SFT run reported.
        var eval = Write("eval.json", new JsonObject { ["run_config"] = sft, ["models"] = new JsonArray(merged), ["output_dir"] = Path.Combine(_dir, "eval") });
        var r = CliRunner.Run("eval", "--config", eval, "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(sftEvalLoss, r.Json["models"]![0]!["metrics"]!["eval/loss"]!.GetValue<double>(), 4);
        var baseEval = Write("base-eval.json", new JsonObject { ["run_config"] = sft, ["models"] = new JsonArray(fx.Policy), ["output_dir"] = Path.Combine(_dir, "base-eval") });
        var b = CliRunner.Run("eval", "--config", baseEval, "--json");
        Assert.True(b.Json["models"]![0]!["metrics"]!["eval/loss"]!.GetValue<double>() > sftEvalLoss + 0.02);
    }

    [Fact]
    public void A_chain_to_a_folder_without_checkpoints_names_the_field()
    {
        var config = Write("bad.json", new JsonObject
        {
            ["name"] = "bad", ["algorithm"] = "dpo", ["policy"] = new JsonObject { ["model"] = $"run:{Path.Combine(_dir, "nothing")}" },
            ["data"] = new JsonObject { ["path"] = fx.Preferences }, ["output_dir"] = Path.Combine(_dir, "bad"),
        });
        var r = CliRunner.Run("train", "--config", config);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("field 'policy.model'", r.Stderr);
        Assert.Contains("holds no complete checkpoint", r.Stderr);
    }
}
