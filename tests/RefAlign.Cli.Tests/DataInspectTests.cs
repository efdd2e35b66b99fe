using System.Text.Json.Nodes;

namespace RefAlign.Cli.Tests;

/// <summary>
/// <c>refalign data inspect</c> as a user debugging a template and truncation runs it: what the model sees of one
/// example, as text and ids, and what truncation removed.
/// </summary>
public sealed class DataInspectTests(TrainVerbFixture fx) : IClassFixture<TrainVerbFixture>, IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("refalign-inspect-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    string Config(JsonObject config)
    {
        var path = Path.Combine(_dir, $"run-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, config.ToJsonString());
        return path;
    }

    string SrDpo(int maxLength, int maxPromptLength) => Config(new JsonObject
    {
        ["name"] = "inspect", ["algorithm"] = "sr-dpo",
        ["policy"] = new JsonObject { ["model"] = fx.Policy, ["chat_template"] = "zephyr" },
        ["data"] = new JsonObject { ["path"] = fx.Preferences, ["max_length"] = maxLength, ["max_prompt_length"] = maxPromptLength },
        ["output_dir"] = Path.Combine(_dir, "out"),
    });

    static int[] Ids(JsonNode node) => [.. node.AsArray().Select(n => n!.GetValue<int>())];

    [Fact]
    public void A_cut_preference_example_shows_both_queries_the_ids_and_what_truncation_removed()
    {
        var r = CliRunner.Run("data", "inspect", "--config", SrDpo(maxLength: 48, maxPromptLength: 32), "--index", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = r.Json;
        var line = JsonNode.Parse(File.ReadLines(fx.Preferences).ElementAt(3))!;

        var prompt = Ids(j["prompt_ids"]!);
        Assert.Equal(32, prompt.Length);
        var removed = j["truncated"]!["prompt"]!;
        Assert.True(removed["tokens"]!.GetValue<int>() > 0, j.ToJsonString());
        // Removed front + kept tail = the templated prompt exactly (the kept part starts with the tokenizer's BOS).
        var kept = j["prompt_text"]!.GetValue<string>();
        var keptQuery = kept.StartsWith("<s>", StringComparison.Ordinal) ? kept[3..] : kept;
        Assert.Equal("<|user|>\n" + line["prompt"]!.GetValue<string>() + "</s>\n<|assistant|>\n", removed["text"]!.GetValue<string>() + keptQuery);

        // The Sr-* query: p whole, then the very tokens of the plain prompt after its first (the BOS, or not).
        var prompted = Ids(j["prompted_ids"]!);
        Assert.Contains("Please generate a response with a usefulness rating of 100 out of 100", j["prompted_text"]!.GetValue<string>());
        Assert.Equal(prompt[1..], prompted[^(prompt.Length - 1)..]);

        // Completions: the fixed budget max_length − max_prompt_length, ending with EOS unless cut.
        Assert.True(Ids(j["chosen_ids"]!).Length <= 16);
        Assert.StartsWith(j["chosen_text"]!.GetValue<string>().Replace("</s>", "", StringComparison.Ordinal).Trim()[..5], line["chosen"]!.GetValue<string>());
        Assert.NotNull(j["rejected_text"]);
        Assert.Contains(j["split"]!.GetValue<string>(), new[] { "train", "eval", "held out (beyond eval_examples)" });
    }

    [Fact]
    public void A_reference_example_shows_its_reference_and_the_human_view_names_each_part()
    {
        var config = Config(new JsonObject
        {
            ["name"] = "inspect-ra", ["algorithm"] = "refalign",
            ["policy"] = new JsonObject { ["model"] = fx.Policy },
            ["data"] = new JsonObject { ["path"] = fx.References, ["max_prompt_length"] = 48 },
            ["refalign"] = new JsonObject { ["reward_model"] = fx.Encoder },
            ["output_dir"] = Path.Combine(_dir, "out-ra"),
        });
        var r = CliRunner.Run("data", "inspect", "--config", config, "--index", "0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var line = JsonNode.Parse(File.ReadLines(fx.References).First())!;
        Assert.Equal(line["reference"]!.GetValue<string>(), r.Json["reference_text"]!.GetValue<string>());
        Assert.Equal(line["harmful"]!.GetValue<bool>(), r.Json["harmful"]!.GetValue<bool>());
        Assert.Null(r.Json["prompted_text"]);
        Assert.Equal(0, r.Json["truncated"]!["prompt"]!["tokens"]!.GetValue<int>());

        var human = CliRunner.Run("data", "inspect", "--config", SrDpo(maxLength: 48, maxPromptLength: 32), "--index", "3");
        Assert.True(human.ExitCode == 0, human.Stderr);
        foreach (var part in new[] { "example 3", "prompt", "prompted query (Sr-*)", "chosen", "rejected", "truncation removed" })
            Assert.Contains(part, human.Stdout);
    }

    [Fact]
    public void An_index_past_the_data_names_the_range()
    {
        var r = CliRunner.Run("data", "inspect", "--config", SrDpo(maxLength: 64, maxPromptLength: 32), "--index", "100000", "--json");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--index 100000", r.Stderr);
        Assert.Contains(fx.Preferences, r.Stderr);
        Assert.Contains("usable examples (0 to", r.Stderr);
    }
}
