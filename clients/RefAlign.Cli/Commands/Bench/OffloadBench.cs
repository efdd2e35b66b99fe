using System.Text;
using System.Text.Json;
using RefAlign.Client;
using RefAlign.Compute.Tokenization;
using RefAlign.Presets;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// The cluster part of <c>refalign bench learner</c>: Sr-DPO and DPO steps through the grains, with the learner on one
/// silo process and a second (generator-role) silo holding the policy replica that runs Sr-DPO's prompted pass while the
/// learner runs its plain forward/backward. Each silo gets one compute and one libtorch thread (two machines' worth of
/// cores on a small box); the same two silos run Sr-DPO with the prompted pass on the learner, for comparison.
/// </summary>
internal static class OffloadBench
{
    /// <summary>Median step and learn-phase seconds per run (the first steps, with cold caches, left out).</summary>
    internal sealed record Result(int Steps, double DpoStep, double SrDpoOffloadedStep, double SrDpoLearnerStep,
        double DpoLearn, double SrDpoOffloadedLearn, double SrDpoLearnerLearn, double OffloadedShare)
    {
        public double OffloadedOverDpo => SrDpoOffloadedStep / DpoStep;
        public double LearnerOverDpo => SrDpoLearnerStep / DpoStep;
    }

    sealed record RunTimes(List<double> Step, List<double> Learn, List<double> Offloaded);

    public static Task<Result> RunAsync(string preset, int pairs, int promptTokens, int completionTokens, int steps, bool quiet, CancellationToken ct) =>
        BenchSupport.InWorkFolderAsync("refalign-bench-offload-", async dir =>
        {
            ModelPresets.Initialize(Path.Combine(dir, "policy"), preset, "llama", seed: 1);
            WritePairs(Path.Combine(dir, "pairs.jsonl"), Path.Combine(dir, "policy"), pairs, promptTokens, completionTokens);
            string[] single = ["--Silo:TorchThreads=1", "--Silo:ComputeThreads=1"];
            if (!quiet) Console.Error.WriteLine("bench: starting a learner silo and a replica silo…");
            await using var a = await LocalSilo.StartAsync(dir, ct, "offload-learner", [.. single, "--Silo:Roles=learner,scorer,reference"]);
            await using var b = await LocalSilo.StartAsync(dir, ct, "offload-replica",
                [.. single, "--Silo:Roles=generator", $"--Cluster:PrimarySiloEndpoint=127.0.0.1:{a.SiloPort}"]);
            using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(a.GrpcAddress) });
            await BenchSupport.WaitForGeneratorsAsync(client, 1, ct);
            var dpo = await TimeRun(client, Config("dpo", "auto", pairs, steps), quiet, ct);
            var offloaded = await TimeRun(client, Config("sr-dpo", "auto", pairs, steps), quiet, ct);
            var learner = await TimeRun(client, Config("sr-dpo", "learner", pairs, steps), quiet, ct);
            return new Result(steps, Median(dpo.Step), Median(offloaded.Step), Median(learner.Step), Median(dpo.Learn), Median(offloaded.Learn),
                Median(learner.Learn), offloaded.Offloaded.Count == 0 ? 0 : offloaded.Offloaded.Average());
        });

    // The first two steps compile, fill the reference cache and bring the replica up: left out, as the in-process bench warms up.
    static double Median(List<double> x) => x.Skip(2).Order().ElementAt(Math.Max(0, (x.Count - 3) / 2));

    static async Task<RunTimes> TimeRun(RefAlignClient client, string config, bool quiet, CancellationToken ct)
    {
        var times = new RunTimes([], [], []);
        var id = await client.StartRunAsync(config, ct);
        if (!quiet) Console.Error.WriteLine($"bench: run {id}…");
        await foreach (var e in client.WatchRunAsync(id, 0, ct))
        {
            if (e.Kind == RunEventKind.Phase && e.PhaseSeconds is { } s)
                (e.Phase == "step" ? times.Step : e.Phase == "learn" ? times.Learn : null)?.Add(s);
            if (e.Kind == RunEventKind.Step && e.Metrics.TryGetValue("refine/offloaded", out var used)) times.Offloaded.Add(used);
        }
        await BenchSupport.EnsureCompletedAsync(client, id, "bench", ct);
        return times;
    }

    /// <summary>
    /// One batch of pairs of about <paramref name="promptTokens"/> + <paramref name="completionTokens"/> tokens with the
    /// preset's tokenizer (every step the same pairs, so the reference cache is warm after the first).
    /// </summary>
    static void WritePairs(string path, string policy, int pairs, int promptTokens, int completionTokens)
    {
        var tok = TextTokenizer.Load(policy);
        string[] words = ["the", "river", "runs", "past", "old", "mills", "and", "quiet", "fields", "where", "children", "learn", "to", "count", "stars", "at", "night"];
        string Text(int tokens, int salt)
        {
            var text = new StringBuilder();
            for (var i = 0; tok.Encode(text.ToString(), addSpecialTokens: false).Count < tokens; i++) text.Append(i == 0 ? "" : " ").Append(words[(i * 7 + salt) % words.Length]);
            return text.ToString();
        }
        var lines = Enumerable.Range(0, pairs).Select(i => JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["prompt"] = Text(promptTokens, i), ["chosen"] = Text(completionTokens, i + 5), ["rejected"] = Text(completionTokens, i + 11),
        }));
        File.WriteAllText(path, string.Join('\n', lines) + "\n", new UTF8Encoding(false));
    }

    static string Config(string algorithm, string pass, int pairs, int steps) => $$"""
        { "name": "bench-offload", "algorithm": "{{algorithm}}", "seed": 5,
          "policy": { "model": "policy", "chat_template": "none" },
          "data": { "path": "pairs.jsonl", "eval_fraction": 0, "max_length": 512, "max_prompt_length": 256 },
          "optimizer": { "kind": "adamw", "learning_rate": 0.00001, "warmup_steps": 0 },
          "preference": { "refinement_pass": "{{pass}}" },
          "batch_size": {{pairs}}, "micro_batch_size": {{pairs}}, "epochs": {{steps}}, "eval_every": 0, "checkpoint_every": 0,
          "output_dir": "runs", "distributed": { "shards": 1 } }
        """;
}
