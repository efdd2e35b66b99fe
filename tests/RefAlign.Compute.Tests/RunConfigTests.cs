using RefAlign.Compute.Data;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Tests;

public sealed class RunConfigTests
{
    [Fact]
    public void FullDocumentParsesWithSnakeCaseNamesAndRoundTrips()
    {
        var json = """
        {
          "name": "sr", "algorithm": "sr-dpo", "seed": 7,
          "policy": { "model": "m", "dtype": "bfloat16", "chat_template": "zephyr", "lora": { "rank": 64, "alpha": 16 } },
          "data": { "path": "d.jsonl", "layout": "hh-rlhf", "max_length": 512, "max_prompt_length": 256 },
          "optimizer": { "kind": "rmsprop", "learning_rate": 5e-7, "warmup_steps": 150, "max_grad_norm": 10 },
          "batch_size": 64, "micro_batch_size": 4,
          "preference": { "beta": 0.1, "lambda": 0.3 },
          "distributed": { "mode": "pipelined", "max_staleness": 1 }
        }
        """;
        var c = RunConfig.Parse(json).Validate(requirePaths: false);
        Assert.Equal(Algorithm.SrDpo, c.Algorithm);
        Assert.True(c.IsSelfRefined);
        Assert.Equal(64, c.Policy.Lora!.Rank);
        Assert.Equal(DataLayout.HhRlhf, c.Data.Layout);
        Assert.Equal(0.3, c.Preference.Lambda);
        Assert.Equal(c, RunConfig.Parse(c.ToJson()) with { Policy = c.Policy with { Lora = c.Policy.Lora } });
        Assert.Contains("\"algorithm\": \"sr-dpo\"", c.ToJson());
    }

    [Theory]
    [InlineData("""{ "optimizer": { "learning_rate": -1 } }""", "optimizer.learning_rate")]
    [InlineData("""{ "batch_size": 0 }""", "batch_size")]
    [InlineData("""{ "algorithm": "dpo", "preference": { "beta": 0 } }""", "preference.beta")]
    [InlineData("""{ "algorithm": "dpo", "preference": { "label_smoothing": 0.1 } }""", "preference.label_smoothing")]
    [InlineData("""{ "algorithm": "ipo", "preference": { "logp_reduction": "max" } }""", "preference.logp_reduction")]
    [InlineData("""{ "algorithm": "sr-dpo", "preference": { "refinement_pass": "gpu" } }""", "preference.refinement_pass")]
    [InlineData("""{ "refalign": { "num_samples": 1 } }""", "refalign.num_samples")]
    [InlineData("""{ "refalign": { "top_p": 1.5 } }""", "refalign.top_p")]
    [InlineData("""{ "refalign": { "calibration_alpha": 0.5 } }""", "refalign.calibration_alpha")]
    [InlineData("""{ "data": { "max_length": 100, "max_prompt_length": 200 } }""", "data.max_length")]
    [InlineData("""{ "data": { "layout": "hh-rlhf" } }""", "data.layout")]
    [InlineData("""{ "policy": { "chat_template": "llama9" } }""", "policy.chat_template")]
    [InlineData("""{ "policy": { "lora": { "rank": 0 } } }""", "policy.lora.rank")]
    [InlineData("""{ "distributed": { "mode": "async" } }""", "distributed.mode")]
    [InlineData("""{ "distributed": { "mode": "pipelined", "max_staleness": 0 } }""", "distributed.max_staleness")]
    [InlineData("""{ "distributed": { "max_restarts": -1 } }""", "distributed.max_restarts")]
    [InlineData("""{ "distributed": { "stall_timeout_seconds": 0.5 } }""", "distributed.stall_timeout_seconds")]
    [InlineData("""{ "distributed": { "stall_timeout_seconds": -1 } }""", "distributed.stall_timeout_seconds")]
    [InlineData("""{ "checkpoint_every_seconds": -5 }""", "checkpoint_every_seconds")]
    [InlineData("""{ "name": "has space" }""", "name")]
    [InlineData("""{ "algorithm": "grpo", "policy_gradient": { "clip_epsilon": 0 } }""", "policy_gradient.clip_epsilon")]
    [InlineData("""{ "algorithm": "rloo", "policy_gradient": { "clip_epsilon": 1.5 } }""", "policy_gradient.clip_epsilon")]
    [InlineData("""{ "algorithm": "reinforce_pp", "policy_gradient": { "kl_coef": -0.1 } }""", "policy_gradient.kl_coef")]
    [InlineData("""{ "algorithm": "grpo", "policy_gradient": { "loss_averaging": "prompt" } }""", "policy_gradient.loss_averaging")]
    [InlineData("""{ "algorithm": "refalign", "policy_gradient": { "kl_coef": 0.1 } }""", "policy_gradient")]
    [InlineData("""{ "algorithm": "grpo", "refalign": { "num_samples": 1 } }""", "refalign.num_samples")]
    [InlineData("""{ "distributed": { "importance_cap": 0 } }""", "distributed.importance_cap")]
    public void InvalidValuesNameTheField(string json, string field)
    {
        var e = Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse(json).Validate(requirePaths: false));
        Assert.Equal(field, e.Field);
        Assert.Contains(field, e.Message);
    }

    [Theory]
    [InlineData("""{ "optimizer": { "learnig_rate": 1e-5 } }""", "optimizer.learnig_rate")]
    [InlineData("""{ "algorithm": "ppo" }""", "algorithm")]
    [InlineData("""{ "batch_size": "sixty-four" }""", "batch_size")]
    [InlineData("""{ "batch_size": 64, """, "$")]
    public void UnknownMistypedOrMalformedFieldsNameThePath(string json, string field)
    {
        var e = Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse(json, "run.json"));
        Assert.StartsWith(field == "$" ? "" : field, e.Field);
        Assert.Contains("run.json", e.Message);
    }

    [Theory]
    [InlineData("""{ "optimizer": { "kind": "sgd" } }""", "optimizer.kind", "must be one of rmsprop, adamw (got 'sgd')")]
    [InlineData("""{ "optimizer": { "schedule": "linear" } }""", "optimizer.schedule", "must be one of constant, cosine (got 'linear')")]
    [InlineData("""{ "policy": { "dtype": "fp8" } }""", "policy.dtype", "must be one of float32, bfloat16, float16 (got 'fp8')")]
    [InlineData("""{ "data": { "pku_preference": "nicer" } }""", "data.pku_preference", "must be one of better, safer (got 'nicer')")]
    [InlineData("""{ "distributed": { "mode": 1 } }""", "distributed.mode", "must be one of sync, pipelined (a string, got Number)")]
    public void ClosedSetsListTheirValues(string json, string field, string detail)
    {
        var e = Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse(json, "run.json"));
        Assert.Equal(field, e.Field);
        Assert.Equal($"run.json: field '{field}' {detail}", e.Message);
    }

    [Fact]
    public void ClosedSetsRoundTripAsTheirNames()
    {
        var c = RunConfig.Parse("""
            { "policy": { "dtype": "bfloat16", "chat_template": "zephyr" }, "data": { "layout": "pku-saferlhf", "pku_preference": "safer" },
              "optimizer": { "kind": "adamw", "schedule": "cosine" }, "distributed": { "mode": "pipelined" } }
            """);
        var json = c.ToJson();
        foreach (var text in new[] { "\"bfloat16\"", "\"zephyr\"", "\"pku-saferlhf\"", "\"safer\"", "\"adamw\"", "\"cosine\"", "\"pipelined\"", "\"sum\"" })
            Assert.Contains(text, json);
        Assert.Equal(c, RunConfig.Parse(json));
    }

    [Fact]
    public void MissingPathsAreReportedWhenRequired()
    {
        var e = Assert.Throws<InvalidRunConfigException>(() => RunConfig.Parse("""{ "policy": { "model": "/nonexistent/model" } }""").Validate());
        Assert.Equal("policy.model", e.Field);
        Assert.Contains("/nonexistent/model", e.Message);
    }
}
