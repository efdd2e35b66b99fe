using System.Text.Json.Nodes;

namespace RefAlign.Cli.Tests;

public sealed class LocalVerbTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-cli-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string InitModel(string arch = "llama")
    {
        var dir = Path.Combine(_root, arch);
        var r = CliRunner.Run("model", "init", "--preset", "tiny", "--arch", arch, "--out", dir, "--seed", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("model.safetensors", r.Json["files"]!.AsArray().Select(f => f!.GetValue<string>()));
        return dir;
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gpt-neox")]
    public void GenerateReturnsKSamplesPerPromptReproducibly(string arch)
    {
        var dir = InitModel(arch);
        string[] args = ["generate", "--model", dir, "--prompt", "What is the capital of France?", "--prompt", "Hi",
            "--num-samples", "3", "--max-new-tokens", "12", "--top-p", "0.9", "--top-k", "50", "--seed", "11", "--json"];
        var a = CliRunner.Run(args);
        Assert.True(a.ExitCode == 0, a.Stderr);
        var samples = a.Json["samples"]!.AsArray();
        Assert.Equal(6, samples.Count);
        foreach (var s in samples)
        {
            var ids = s!["token_ids"]!.AsArray();
            var lps = s["token_logprobs"]!.AsArray();
            Assert.InRange(ids.Count, 1, 12);
            Assert.Equal(ids.Count, lps.Count);
            Assert.All(lps, lp => Assert.True(lp!.GetValue<double>() <= 0));
        }
        var b = CliRunner.Run(args);
        Assert.Equal(a.Json["samples"]!.ToJsonString(), b.Json["samples"]!.ToJsonString());
    }

    [Fact]
    public void LogProbsSumEqualsTokenValuesAndEndsWithEos()
    {
        var dir = InitModel();
        var r = CliRunner.Run("logprobs", "--model", dir, "--prompt", "Tell me a fact.", "--completion", "Water boils at 100 degrees.", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = r.Json;
        var perToken = j["token_logprobs"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
        Assert.Equal(j["completion_ids"]!.AsArray().Count, perToken.Length);
        Assert.Equal(2, j["completion_ids"]!.AsArray()[^1]!.GetValue<int>());
        Assert.Equal(1, j["prompt_ids"]!.AsArray()[0]!.GetValue<int>());
        Assert.Equal(perToken.Sum(), j["sum_logprob"]!.GetValue<double>(), 4);
        Assert.Equal(perToken.Average(), j["mean_logprob"]!.GetValue<double>(), 4);

        // Greedy generation's own log-probs agree with teacher-forced scoring of the same text (up to re-tokenisation),
        // so check the sampled-token convention directly: scoring with --no-eos drops exactly the EOS term.
        var n = CliRunner.Run("logprobs", "--model", dir, "--prompt", "Tell me a fact.", "--completion", "Water boils at 100 degrees.", "--no-eos", "--json");
        Assert.Equal(perToken.Length - 1, n.Json["token_logprobs"]!.AsArray().Count);
        Assert.Equal(perToken[..^1].Sum(), n.Json["sum_logprob"]!.GetValue<double>(), 4);
    }

    [Fact]
    public void ZephyrTemplateMarksTheUserTurnWithEos()
    {
        var dir = InitModel();
        var plain = CliRunner.Run("logprobs", "--model", dir, "--prompt", "Hi", "--completion", "Hello", "--json");
        var chat = CliRunner.Run("logprobs", "--model", dir, "--prompt", "Hi", "--completion", "Hello", "--chat-template", "zephyr", "--json");
        var ids = chat.Json["prompt_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        Assert.Contains(2, ids); // the "</s>" after the user turn is the EOS token, not text
        Assert.True(ids.Length > plain.Json["prompt_ids"]!.AsArray().Count);
    }

    [Fact]
    public void BadInputGivesOneClearLineAndExitCode2()
    {
        var missing = CliRunner.Run("generate", "--model", Path.Combine(_root, "nope"), "--prompt", "x");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("does not exist", missing.Stderr);
        Assert.DoesNotContain("   at ", missing.Stderr);

        var dir = InitModel();
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ \"architectures\": [\"BertModel\"] }");
        var badArch = CliRunner.Run("logprobs", "--model", dir, "--prompt", "a", "--completion", "b");
        Assert.Equal(2, badArch.ExitCode);
        Assert.Contains("architectures", badArch.Stderr);
        Assert.Contains("BertModel", badArch.Stderr);
    }

    [Fact]
    public async Task A_local_silo_that_exits_during_its_start_is_named_with_its_log_reason_and_the_work_folder_is_kept()
    {
        // The demo's silo inherits the environment; an invalid timing makes it refuse to start.
        var work = Path.Combine(_root, "demo");
        var r = await CliRunner.RunAsync(new Dictionary<string, string?> { ["Timing__ProbeTimeout"] = "bogus" }, null, TimeSpan.FromMinutes(3),
            "demo", "--work", work, "--refalign-steps", "1", "--srdpo-steps", "1", "--json");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("the silo exited with code 2", r.Stderr);
        Assert.Contains("Invalid setting 'Timing:ProbeTimeout': 'bogus' is not a duration", r.Stderr);
        Assert.True(File.Exists(Path.Combine(work, "silo.log")), r.Stderr);
    }

    [Fact]
    public void A_gpu_device_on_this_cpu_build_fails_every_local_verb_with_the_option_named()
    {
        var dir = InitModel();
        var lines = Path.Combine(_root, "lines.txt");
        File.WriteAllText(lines, "a line\n");
        string[][] verbs =
        [
            ["generate", "--model", dir, "--prompt", "x", "--device", "cuda"],
            ["logprobs", "--model", dir, "--prompt", "x", "--completion", "y", "--device", "cuda:0"],
            ["bertscore", "--model", dir, "-c", lines, "-r", lines, "--device", "cuda:1"],
            ["train", "--config", Path.Combine(_root, "absent.json"), "--device", "cuda"],
            ["eval", "--config", Path.Combine(_root, "absent.json"), "--device", "cuda"],
            ["bench", "learner", "--preset", "tiny", "--device", "cuda"],
        ];
        foreach (var args in verbs)
        {
            var r = CliRunner.Run(args);
            Assert.Equal(2, r.ExitCode);
            Assert.StartsWith($"error: --device is '{args[^1]}', but the loaded libtorch is a CPU build", r.Stderr.Trim());
            Assert.DoesNotContain("   at ", r.Stderr);
        }
        var bad = CliRunner.Run("generate", "--model", dir, "--prompt", "x", "--device", "tpu");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("'tpu', which is not a device", bad.Stderr);
    }

    [Fact]
    public void Bench_generation_json_has_the_ratios_and_the_decode_floor_they_are_bounded_by()
    {
        var r = CliRunner.Run("bench", "generation", "--preset", "tiny", "--new-tokens", "8", "--prompt-tokens", "16",
            "--rollout-prompts", "2", "--rollout-samples", "2", "--rollout-new-tokens", "4", "--train-seq", "32", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        double Field(string name) => root.GetProperty(name).GetDouble();
        var ratios = root.GetProperty("ratios");
        foreach (var name in new[] { "kv_cache_speedup", "kv_cache_speedup_ceiling", "decode_split_speedup", "shared_prefix_speedup" })
            Assert.True(ratios.GetProperty(name).GetDouble() is > 0 and < double.PositiveInfinity, name);
        Assert.Equal(Field("cached_tokens_per_second") / Field("uncached_tokens_per_second"), ratios.GetProperty("kv_cache_speedup").GetDouble(), 9);
        Assert.Equal(Field("cached_tokens_per_second") / Field("cached_unsplit_tokens_per_second"), ratios.GetProperty("decode_split_speedup").GetDouble(), 9);
        // The ceiling is a recomputed token's time over the floor's: what a decode step at the weights' floor would give.
        Assert.True(Field("decode_floor_milliseconds") > 0);
        Assert.Equal(1e3 / Field("uncached_tokens_per_second") / Field("decode_floor_milliseconds"), Field("cache_speedup_ceiling"), 6);
    }

    [Fact]
    public void PromptLongerThanContextNamesTheField()
    {
        var dir = InitModel();
        var longPrompt = string.Join(' ', Enumerable.Repeat("antidisestablishmentarianism", 600));
        var r = CliRunner.Run("generate", "--model", dir, "--prompt", longPrompt, "--max-new-tokens", "8");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("max_position_embeddings", r.Stderr);
    }

    [Fact]
    public void InvalidSamplingOptionIsRejected()
    {
        var dir = InitModel();
        var r = CliRunner.Run("generate", "--model", dir, "--prompt", "x", "--top-p", "1.5");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("top_p", r.Stderr);
    }
}
