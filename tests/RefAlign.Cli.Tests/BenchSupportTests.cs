using RefAlign.Cli.Commands.Bench;

namespace RefAlign.Cli.Tests;

/// <summary>How <c>bench</c> suites time what they compare.</summary>
public sealed class BenchSupportTests
{
    [Fact]
    public void Interleaved_takes_the_actions_in_turn_after_one_warm_up_round_and_relates_each_to_the_first()
    {
        var calls = new List<char>();
        // Each call lasts a moment: a bare List.Add can take less than the clock's tick.
        Action Call(char c) => () =>
        {
            calls.Add(c);
            Thread.Sleep(1);
        };
        var (medians, ratios) = BenchSupport.Interleaved(3, Call('a'), Call('b'), Call('c'));
        Assert.Equal("abcabcabcabc", new string([.. calls]));
        Assert.Equal(3, medians.Length);
        Assert.All(medians, m => Assert.True(m > 0));
        Assert.Equal(1.0, ratios[0]);
        Assert.All(ratios, r => Assert.True(r is > 0 and < double.PositiveInfinity));
    }

    [Fact]
    public void Bench_learner_json_has_its_ratios_from_steps_taken_in_turn()
    {
        var r = CliRunner.Run("bench", "learner", "--preset", "tiny", "--pairs", "2", "--prompt-tokens", "8", "--completion-tokens", "8",
            "--runs", "3", "--cluster-steps", "0", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var ratios = root.GetProperty("ratios");
        foreach (var name in new[] { "srdpo_over_dpo", "srdpo_unshared_prefix_over_dpo", "sft_over_dpo", "learner_flops_ratio", "learner_forward_backward_flops_ratio" })
            Assert.True(ratios.GetProperty(name).GetDouble() is > 0 and < double.PositiveInfinity, name);
        // The step's parts measured alone: forward + backward and AdamW, named in the finding that splits the step.
        var profile = root.GetProperty("profile");
        Assert.True(profile.GetProperty("forward_backward_seconds").GetDouble() > 0);
        Assert.True(profile.GetProperty("optimizer_seconds").GetDouble() > 0);
        Assert.Contains("AdamW", profile.GetProperty("finding").GetString());
        foreach (var name in new[] { "dpo_seconds", "sr_dpo_seconds", "sft_seconds" })
            Assert.True(root.GetProperty(name).GetDouble() > 0, name);
        Assert.Equal(root.GetProperty("sr_dpo_over_dpo").GetDouble(), ratios.GetProperty("srdpo_over_dpo").GetDouble());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, root.GetProperty("offload").ValueKind);
    }

    [Fact]
    public void Bench_bertscore_json_has_its_overhead_from_scorer_and_bare_forward_in_turn()
    {
        var r = CliRunner.Run("bench", "bertscore", "--preset", "tiny-roberta", "--pairs", "16", "--runs", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("score_seconds").GetDouble() > 0);
        Assert.True(root.GetProperty("forward_seconds").GetDouble() > 0);
        Assert.Equal(16 / root.GetProperty("score_seconds").GetDouble(), root.GetProperty("pairs_per_second").GetDouble(), 9);
        var overhead = root.GetProperty("ratios").GetProperty("scoring_overhead").GetDouble();
        Assert.True(overhead is > -1 and < double.PositiveInfinity, $"{overhead}");
        Assert.Equal(root.GetProperty("overhead_percent").GetDouble() / 100, overhead, 12);
    }
}
