using RefAlign.Compute.Rewards;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Tests;

/// <summary>Rule rewards and the validation of <c>refalign.rewards</c> (docs/algorithms.md §9).</summary>
public sealed class RuleRewardTests
{
    static RuleOutcome Judge(string response, string answer, RewardSpec? spec = null) =>
        new RuleReward(spec ?? new RewardSpec { Kind = RewardKind.Rule }).Judge(response, answer);

    [Theory]
    [InlineData("The answer is 42.", "42", true)]
    [InlineData("3 + 4 = 7", "7", true)]            // the last number, not the first
    [InlineData("7, or maybe 8", "7", false)]
    [InlineData("It is 2,000 metres", "2000", false)] // the default pattern stops at the comma: "000" is the last number
    [InlineData("-5 degrees", "-5", true)]
    [InlineData("about 3.50", "3.5", true)]          // numeric match: 3.50 = 3.5
    [InlineData("no digits here", "1", false)]
    public void DefaultExtractsTheLastNumberAndComparesNumerically(string response, string answer, bool correct)
    {
        var o = Judge(response, answer);
        Assert.Equal(correct, o.Correct);
        Assert.Equal(correct ? 1.0 : 0.0, o.Score);
    }

    [Fact]
    public void CustomPatternGroupExactMatchToleranceAndFormatBonus()
    {
        var spec = new RewardSpec { Kind = RewardKind.Rule, Pattern = @"Answer:\s*([0-9,]+)", Match = RuleMatch.Numeric, FormatBonus = 0.1 };
        var o = Judge("Working: 12 + 30. Answer: 2,042", "2042", spec);
        Assert.Equal("2,042", o.Extracted); // group 1, commas dropped when compared as numbers
        Assert.True(o.Correct);
        Assert.Equal(1.1, o.Score, 12);
        var wrong = Judge("Answer: 5", "2042", spec);
        Assert.False(wrong.Correct);
        Assert.Equal(0.1, wrong.Score, 12); // the format alone earns the bonus
        Assert.Equal(0.0, Judge("2042", "2042", spec).Score); // right number, wrong format: the pattern never matched

        var exact = spec with { Match = RuleMatch.Exact, Pattern = @"Answer:\s*(\w+)", FormatBonus = null };
        Assert.True(Judge("Answer: Canberra", " Canberra ", exact).Correct);
        Assert.False(Judge("Answer: canberra", "Canberra", exact).Correct);

        var tolerant = new RewardSpec { Kind = RewardKind.Rule, Tolerance = 0.01 };
        Assert.True(Judge("3.14159", "3.14", tolerant).Correct);
        Assert.False(Judge("3.16", "3.14", tolerant).Correct);

        var format = new RewardSpec { Kind = RewardKind.Rule, FormatBonus = 0.5, FormatPattern = @"^\d+$" };
        Assert.Equal(1.5, Judge("7", "7", format).Score);
        Assert.Equal(1.0, Judge("it is 7", "7", format).Score);
    }

    [Fact]
    public void TotalIsTheWeightedMeanAndASingleRewardIsItsOwnScoreExactly()
    {
        RewardSpec[] one = [new() { Kind = RewardKind.BertScore, Weight = 3 }];
        Assert.Equal(0.1 + 0.2, RewardSpec.Total(one, [0.1 + 0.2])); // not (3·s)/3
        RewardSpec[] two = [new() { Kind = RewardKind.Rule, Weight = 2 }, new() { Kind = RewardKind.BertScore, Weight = -1 }];
        Assert.Equal((2 * 1.0 - 0.8) / 1.0, RewardSpec.Total(two, [1.0, 0.8]), 14);
        Assert.Equal("reward/rule", RewardSpec.MetricName(two, 0));
        RewardSpec[] twice = [new() { Kind = RewardKind.Rule }, new() { Kind = RewardKind.Rule, Pattern = "x" }];
        Assert.Equal("reward/rule/1", RewardSpec.MetricName(twice, 1));
    }

    static InvalidRunConfigException Invalid(string rewards) =>
        Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse($$"""{ "algorithm": "grpo", "refalign": { "rewards": {{rewards}} } }""").Validate(requirePaths: false));

    [Theory]
    [InlineData("""[]""", "refalign.rewards")]
    [InlineData("""[{ "kind": "rule", "weight": 1 }, { "kind": "rule", "weight": -1 }]""", "refalign.rewards")]
    [InlineData("""[{ "kind": "rule", "pattern": "(unclosed" }]""", "refalign.rewards[0].pattern")]
    [InlineData("""[{ "kind": "rule", "pattern": "(a)\\1" }]""", "refalign.rewards[0].pattern")] // a backreference: not linear-time
    [InlineData("""[{ "kind": "rule", "format_pattern": "[" }]""", "refalign.rewards[0].format_pattern")]
    [InlineData("""[{ "kind": "rule", "tolerance": -1 }]""", "refalign.rewards[0].tolerance")]
    [InlineData("""[{ "kind": "rule", "url": "https://x" }]""", "refalign.rewards[0].url")]
    [InlineData("""[{ "kind": "bertscore" }, { "kind": "bertscore" }]""", "refalign.rewards")]
    [InlineData("""[{ "kind": "reward_model" }]""", "refalign.rewards[0].model")]
    [InlineData("""[{ "kind": "remote", "url": "http://10.1.2.3:50051", "api_key_env": "K" }]""", "refalign.rewards[0].url")]
    [InlineData("""[{ "kind": "remote", "url": "ftp://127.0.0.1", "api_key_env": "K" }]""", "refalign.rewards[0].url")]
    [InlineData("""[{ "kind": "remote", "url": "https://rm.example:443" }]""", "refalign.rewards[0].api_key_env")]
    [InlineData("""[{ "kind": "remote", "url": "https://rm.example", "api_key_env": "K", "max_concurrency": 0 }]""", "refalign.rewards[0].max_concurrency")]
    [InlineData("""[{ "kind": "remote", "url": "https://rm.example", "api_key_env": "K", "min_score": 1, "max_score": 0 }]""", "refalign.rewards[0].min_score")]
    [InlineData("""[{ "kind": "telepathy" }]""", "refalign.rewards[0].kind")]
    [InlineData("""[{ "kind": "rule", "colour": "red" }]""", "refalign.rewards[0].colour")]
    public void BadRewardsNameTheField(string rewards, string field)
    {
        var e = Invalid(rewards);
        Assert.Equal(field, e.Field);
        Assert.Contains(field.Split('.')[^1].Split('[')[0], e.Message);
    }

    [Fact]
    public void PlainHttpIsAllowedOnLoopbackOnly()
    {
        foreach (var url in new[] { "http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000", "https://rm.example:443" })
            RunConfig.Parse($$"""{ "algorithm": "grpo", "refalign": { "rewards": [{ "kind": "remote", "url": "{{url}}", "api_key_env": "K" }] } }""")
                .Validate(requirePaths: false);
        Assert.Contains("needs TLS", Invalid("""[{ "kind": "remote", "url": "http://rm.example:80", "api_key_env": "K" }]""").Message);
    }
}
