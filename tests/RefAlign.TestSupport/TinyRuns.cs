using System.Globalization;

namespace RefAlign.TestSupport;

/// <summary>Run configs (JSON) over a <see cref="DemoWorkspace"/>'s folders, with paths relative to its root.</summary>
public static class TinyRuns
{
    /// <summary>A RefAlign run: tiny policy, tiny BERTScore encoder, the demo references, K = 2, 6 new tokens.</summary>
    public static string RefAlign(string name, int steps, int checkpointEvery = 2, int shards = 2, double learningRate = 0.01, int seed = 3,
        string mode = "sync", string extra = "", int batchSize = 4, int numSamples = 2, int maxNewTokens = 6, int maxRestarts = 5,
        int stallTimeoutSeconds = 1800) => $$"""
        { "name": "{{name}}", "algorithm": "refalign", "seed": {{seed}},
          "policy": { "model": "policy" },
          "data": { "path": "data/references.jsonl", "max_prompt_length": 32, "limit": 24 },
          "optimizer": { "kind": "adamw", "learning_rate": {{learningRate.ToString(CultureInfo.InvariantCulture)}}, "warmup_steps": 0 },
          "refalign": { "reward_model": "encoder", "num_samples": {{numSamples}}, "max_new_tokens": {{maxNewTokens}} },
          "batch_size": {{batchSize}}, "micro_batch_size": 8, "max_steps": {{steps}}, "eval_every": 0, "checkpoint_every": {{checkpointEvery}},
          "output_dir": "runs", "distributed": { "mode": "{{mode}}", "shards": {{shards}}, "max_restarts": {{maxRestarts}}, "stall_timeout_seconds": {{stallTimeoutSeconds}} }{{extra}} }
        """;

    /// <summary>A Sr-DPO run on the demo preferences.</summary>
    public static string SrDpo(string name, int steps, int checkpointEvery = 2, int shards = 2, int seed = 3, string extra = "",
        int stallTimeoutSeconds = 1800) => $$"""
        { "name": "{{name}}", "algorithm": "sr-dpo", "seed": {{seed}},
          "policy": { "model": "policy" },
          "data": { "path": "data/preferences.jsonl", "max_length": 96, "max_prompt_length": 48, "limit": 48 },
          "optimizer": { "kind": "adamw", "learning_rate": 0.002, "warmup_steps": 1 },
          "preference": { "beta": 0.1, "lambda": 0.5 },
          "batch_size": 8, "micro_batch_size": 4, "max_steps": {{steps}}, "eval_every": 0, "checkpoint_every": {{checkpointEvery}},
          "output_dir": "runs", "distributed": { "shards": {{shards}}, "stall_timeout_seconds": {{stallTimeoutSeconds}} }{{extra}} }
        """;

    /// <summary>Writes <paramref name="json"/> to a new file under <paramref name="folder"/>; returns its path.</summary>
    public static string Write(string folder, string json)
    {
        var path = Path.Combine(folder, $"run-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }
}
