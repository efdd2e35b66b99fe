using RefAlign.Compute.Models;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// A non-finite loss or gradient fails its step naming the step and the term, and nothing of it reaches the weights; a
/// config that would produce one (a factor beyond float32) is refused by field before any run.
/// </summary>
public sealed class NonFiniteStepTests
{
    static RunConfig SrDpo(double lambda) => new()
    {
        Algorithm = Algorithm.SrDpo,
        Preference = new PreferenceSection { Beta = 0.1, Lambda = lambda },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-3, WarmupSteps = 0 },
        BatchSize = 2, MicroBatchSize = 2,
    };

    /// <summary>
    /// Two pairs whose prompted reference makes Δ = β·h_p large and positive: with λ = 1e308 the shifted logit
    /// β·h − λ·Δ is −∞ in float32 and the loss +∞. <paramref name="flip"/> makes Δ negative (a finite loss).
    /// </summary>
    static List<PreferenceRow> Rows(bool flip = false)
    {
        var prompted = flip ? 1e4 : -1e4;
        return [.. Enumerable.Range(0, 2).Select(i => new PreferenceRow(
            new PreferencePair(i, [1, 5 + i, 6], [7, 8 + i], [9, 10 + i], [1, 3, 5 + i, 6]),
            new ReferenceLogProbs(-5, -2.5, -5, -2.5, prompted, prompted / 2, 0, 0)))];
    }

    static float[] Weights(CausalLm model) => model.named_parameters().First().parameter.detach().cpu().data<float>().ToArray();

    [Fact]
    public void A_lambda_of_1e308_fails_the_step_by_name_and_leaves_the_weights_untouched()
    {
        using var policy = TinyModels.Create();
        using var learner = new Learner(SrDpo(1e308), policy, padId: 0, totalSteps: 4);
        var before = Weights(policy);
        var e = Assert.Throws<NonFiniteStepException>(() => learner.PreferenceStep(0, Rows()));
        Assert.Equal(0, e.Step);
        Assert.Equal("loss", e.Term);
        Assert.Contains("step 0", e.Message);
        Assert.Contains("'loss'", e.Message);
        Assert.Contains("nothing was applied", e.Message);
        Assert.Equal(before, Weights(policy));
        Assert.Equal(0, learner.Step);
        Assert.Equal(0, learner.WeightVersion);
        Assert.All(learner.TrainableParameters(), p => Assert.True(p.Tensor.grad is null || p.Tensor.grad.abs().max().item<float>() == 0, p.Name));

        // The same step with finite terms is applied as usual afterwards: the dropped gradients do not leak into it.
        var applied = learner.PreferenceStep(0, Rows(flip: true));
        Assert.Equal(1, applied.WeightVersion);
        Assert.True(double.IsFinite(applied.Metrics["loss"]));
    }

    [Fact]
    public void A_non_finite_gradient_is_never_applied()
    {
        using var p = new Parameter(ones(3)) { grad = tensor(new float[] { 1, float.NaN, 2 }) };
        using var opt = new PolicyOptimizer([p], new OptimizerOptions { MaxGradNorm = 1.0 });
        var e = Assert.Throws<NonFiniteStepException>(() => opt.ClipAndStep());
        Assert.Equal("grad_norm", e.Term);
        Assert.Equal(0, e.Step);
        Assert.Equal([1f, 1f, 1f], p.detach().data<float>().ToArray());
        Assert.Equal(0, opt.Step);
        Assert.True(p.grad is null || p.grad.abs().sum().item<float>() == 0);
    }

    [Fact]
    public void An_update_that_leaves_weights_non_finite_fails_its_step()
    {
        // 1e38 is inside float32, but RMSprop's first update is about 10·lr: beyond it.
        using var p = new Parameter(ones(2)) { grad = tensor(new float[] { 1, 1 }) };
        using var opt = new PolicyOptimizer([p], new OptimizerOptions { LearningRate = 1e38, WarmupSteps = 0 });
        var e = Assert.Throws<NonFiniteStepException>(() => opt.ClipAndStep());
        Assert.Equal("weights", e.Term);
        Assert.Contains("learning rate", e.Message);
        Assert.Equal(0, opt.Step); // the step is not counted as taken
    }

    [Theory]
    [InlineData("preference.lambda", "{\"algorithm\":\"sr-dpo\",\"preference\":{\"lambda\":1e308}}")]
    [InlineData("optimizer.learning_rate", "{\"optimizer\":{\"learning_rate\":1e300}}")]
    [InlineData("preference.beta", "{\"algorithm\":\"dpo\",\"preference\":{\"beta\":\"Infinity\"}}")]
    [InlineData("refalign.temperature", "{\"refalign\":{\"temperature\":-1e39}}")]
    public void A_number_beyond_float32_is_refused_by_field(string field, string json)
    {
        var e = Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse(json).Validate(requirePaths: false));
        Assert.Equal(field, e.Field);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void A_list_longer_than_its_choices_is_refused_by_field()
    {
        var many = string.Join(",", Enumerable.Repeat("\"q_proj\"", 10_000));
        var e = Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse($"{{\"policy\":{{\"lora\":{{\"target_modules\":[{many}]}}}}}}").Validate(requirePaths: false));
        Assert.Equal("policy.lora.target_modules", e.Field);
        Assert.Contains("at most", e.Message);
    }
}
