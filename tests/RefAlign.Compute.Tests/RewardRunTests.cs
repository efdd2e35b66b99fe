using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Rewards in whole runs (docs/algorithms.md §9): the verifiable demo task learnt by each algorithm of the GRPO family,
/// a reward model's score raised, several rewards reported beside their total, and the bad inputs refused at start.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class RewardRunTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-rewards-").FullName;

    public RewardRunTests() => VerifiableTask.Prepare(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static RunRecorder Run(RunConfig cfg) => RunRecorder.RunLocally(cfg);

    [Theory]
    [InlineData(Algorithm.Grpo)]
    [InlineData(Algorithm.Rloo)]
    [InlineData(Algorithm.ReinforcePp)]
    public void The_recipe_with_a_rule_reward_raises_held_out_accuracy(Algorithm algorithm)
    {
        var recipe = VerifiableTask.Recipe(_root);
        var cfg = recipe with { Algorithm = algorithm, OutputDir = Path.Combine(_root, "runs", algorithm.ToString()) };
        var rec = Run(cfg);
        Assert.Equal(40, rec.Steps.Count);
        var before = VerifiableTask.HeldOutAccuracy(cfg, cfg.Policy.Model, Path.Combine(_root, "eval-before"));
        var after = VerifiableTask.HeldOutAccuracy(cfg, rec.Checkpoints[^1].Folder, Path.Combine(_root, $"eval-{algorithm}"));
        var trace = string.Join(" ", rec.Steps.Select(s => s.Metrics["accuracy"].ToString("F2")));
        // A random tiny policy says a digit next almost never (< 2 %); the trained one says the right one far more often.
        Assert.True(before < 0.02, $"starting accuracy {before:F3}");
        Assert.True(after >= 0.05 && after >= 4 * before, $"held-out accuracy {before:F3} → {after:F3}; train accuracy per step: {trace}");
        Assert.True(rec.Evals[^1]["eval/accuracy"] > rec.Evals[0]["eval/accuracy"] || rec.Evals[^1]["eval/accuracy"] >= 0.05);
        Assert.All(rec.Steps, s => Assert.Equal(s.Metrics["reward/rule"], s.Metrics["accuracy"], 12)); // no format bonus: score = correctness
    }

    [Fact]
    public void A_reward_models_score_rises_and_several_rewards_report_beside_their_total()
    {
        var rm = Path.Combine(_root, "rm");
        RewardModelPresets.Initialize(rm, "llama", seed: 4);
        var recipe = VerifiableTask.Recipe(_root);
        var cfg = (recipe with
        {
            OutputDir = Path.Combine(_root, "runs", "rm"), MaxSteps = 30, EvalEvery = 0,
            Optimizer = recipe.Optimizer with { LearningRate = 3e-3 },
            RefAlign = recipe.RefAlign with
            {
                NumSamples = 8, MaxNewTokens = 4,
                Rewards = [new RewardSpec { Kind = RewardKind.RewardModel, Model = rm, Weight = 3 }, new RewardSpec { Kind = RewardKind.Rule, Weight = 1 }],
            },
        }).Validate();
        var rec = Run(cfg);
        foreach (var s in rec.Steps)
        {
            var m = s.Metrics;
            Assert.Equal((3 * m["reward/reward_model"] + m["reward/rule"]) / 4, m["reward/total"], 10);
            Assert.Equal(m["reward/total"], m["reward/mean"], 10); // no length factor: the shaped reward is the total
        }
        var scores = rec.Steps.Select(s => s.Metrics["reward/reward_model"]).ToArray();
        var (early, late) = (scores.Take(5).Average(), scores.TakeLast(5).Average());
        Assert.True(late > early + 0.1, $"reward model score early {early:F3}, late {late:F3}: {string.Join(" ", scores.Select(x => x.ToString("F2")))}");
    }

    [Fact]
    public void Data_without_answers_for_a_rule_and_a_headless_reward_model_are_refused_at_start()
    {
        var recipe = VerifiableTask.Recipe(_root);
        var references = Path.Combine(_root, "data", DemoData.ReferencesFileName);
        DemoData.WriteTo(Path.Combine(_root, "data"));
        var noAnswers = Assert.Throws<InvalidRunConfigException>(() => (recipe with { Data = recipe.Data with { Path = references } }).Validate());
        Assert.Equal("data.path", noAnswers.Field);
        Assert.Contains("references.jsonl:1: field 'answer' is missing", noAnswers.Message);
        Assert.Contains("refalign.rewards[0] (rule)", noAnswers.Message);

        var lm = Path.Combine(_root, "lm");
        ModelPresets.Initialize(lm, "tiny", "llama", seed: 2);
        var headless = Assert.Throws<InvalidRunConfigException>(() => (recipe with
        {
            RefAlign = recipe.RefAlign with { Rewards = [new RewardSpec { Kind = RewardKind.RewardModel, Model = lm }] },
        }).Validate());
        Assert.Equal("refalign.rewards[0].model", headless.Field);
        Assert.Contains("not a sequence classifier", headless.Message);

        var noKey = Assert.Throws<InvalidRunConfigException>(() => (recipe with
        {
            RefAlign = recipe.RefAlign with { Rewards = [new RewardSpec { Kind = RewardKind.Remote, Url = "https://127.0.0.1:1", ApiKeyEnv = "REFALIGN_TEST_UNSET_KEY" }] },
        }).Validate());
        Assert.Equal("refalign.rewards[0].api_key_env", noKey.Field);
    }
}
