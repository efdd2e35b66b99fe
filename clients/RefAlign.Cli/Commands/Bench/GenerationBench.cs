using System.CommandLine;
using System.Diagnostics;
using RefAlign.Presets;
using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// <c>refalign bench generation</c>: generation tokens/s with and without the KV cache, RefAlign rollout tokens/s with and
/// without compact decoding (each prompt prefilled once for its K samples, finished rows dropped), and a training step's
/// achieved FLOP/s relative to the same process's measured matmul FLOP/s. Ratios come from one run, so machine drift cancels.
/// </summary>
internal static class GenerationBench
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { DefaultValueFactory = _ => "small" };
        preset.AcceptOnlyFromAmong([.. ModelPresets.Names]);
        var newTokens = new Option<int>("--new-tokens") { DefaultValueFactory = _ => 128 };
        // 192 prompt tokens: the RefAlign safety recipe's prompt length (docs/algorithms.md §3).
        var promptTokens = new Option<int>("--prompt-tokens") { DefaultValueFactory = _ => 192 };
        var genBatch = new Option<int>("--gen-batch") { Description = "Rows generated together.", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--train-batch") { Description = "Sequences per training step.", DefaultValueFactory = _ => 4 };
        var seqLen = new Option<int>("--train-seq") { Description = "Tokens per training sequence.", DefaultValueFactory = _ => 256 };
        // RefAlign's rollout shape: a generator's prompts × K samples each (docs/algorithms.md §3).
        var rolloutPrompts = new Option<int>("--rollout-prompts") { Description = "Prompts per rollout call.", DefaultValueFactory = _ => 8 };
        var rolloutSamples = new Option<int>("--rollout-samples") { Description = "Samples (K) per prompt.", DefaultValueFactory = _ => 4 };
        var rolloutTokens = new Option<int>("--rollout-new-tokens") { DefaultValueFactory = _ => 64 };
        var json = CliSupport.JsonOption();
        var cmd = new Command("generation", "Decoder generation with and without KV cache, and a forward+backward step.")
        {
            preset, newTokens, promptTokens, genBatch, batch, seqLen, rolloutPrompts, rolloutSamples, rolloutTokens, json,
        };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            BenchSupport.UseDevice(r);
            var rollout = new RolloutShape(r.GetValue(rolloutPrompts), r.GetValue(rolloutSamples), r.GetValue(rolloutTokens));
            var result = Run(r.GetValue(preset)!, r.GetValue(newTokens), r.GetValue(promptTokens), r.GetValue(genBatch), r.GetValue(batch),
                r.GetValue(seqLen), rollout, quiet: r.GetValue(json));
            BenchSupport.Emit(r, "generation", result, r.GetValue(json), () => Print(result));
            return 0;
        }));
        return cmd;
    }

    internal sealed record RolloutShape(int Prompts, int Samples, int NewTokens);

    internal sealed record BenchResult(string Preset, long Parameters, int Threads, int GenBatch, int PromptTokens, int NewTokens,
        double CachedTokensPerSecond, double UncachedTokensPerSecond, double CacheSpeedup,
        double CachedUnsplitTokensPerSecond, double DecodeSplitSpeedup, double DecodeFloorMilliseconds,
        double CacheSpeedupCeiling, RolloutShape Rollout,
        double RolloutCompactTokensPerSecond, double RolloutPlainTokensPerSecond, double SharedPrefixSpeedup,
        double MatmulGflops, double TrainStepSeconds, double TrainStepGflops, double TrainToMatmulRatio)
    {
        /// <summary>The figures scripts compare against their goals, under the names every bench uses.</summary>
        public IReadOnlyDictionary<string, double> Ratios => new Dictionary<string, double>
        {
            ["kv_cache_speedup"] = CacheSpeedup, ["kv_cache_speedup_ceiling"] = CacheSpeedupCeiling,
            ["decode_split_speedup"] = DecodeSplitSpeedup, ["shared_prefix_speedup"] = SharedPrefixSpeedup,
        };
    }

    static BenchResult Run(string preset, int newTokens, int promptTokens, int genBatch, int trainBatch, int trainSeq,
        RolloutShape rollout, bool quiet)
    {
        var cfg = ModelPresets.Shape(preset) with { Architecture = "LlamaForCausalLM", BosTokenId = 1, EosTokenIds = [2] };
        using var model = new CausalLm(cfg);
        model.InitializeWeights(0);
        model.eval();
        List<int[]> Prompts(int n) => [.. Enumerable.Range(0, n)
            .Select(b => Enumerable.Range(0, promptTokens).Select(i => 3 + (i * 7 + b) % (cfg.VocabSize - 3)).ToArray())];
        var prompts = Prompts(genBatch);
        var generated = newTokens * genBatch;
        var opts = new SamplingOptions { MaxNewTokens = newTokens, Temperature = 0 };
        double cached = 0, unsplit = 0, uncached = 0, floor = 0, matmul = 0, stepSeconds = 0;
        BenchSupport.Step(quiet, "warm-up", () => TextGenerator.Generate(model, prompts, opts with { MaxNewTokens = 8 }, [], 0));
        // Best of 3 (cached) and of 2 (recomputed, ~10× longer each), like the rollout figures below.
        BenchSupport.Step(quiet, "generation with KV cache", () => cached = generated / BenchSupport.Best(3, () => TextGenerator.Generate(model, prompts, opts, [], 0)));
        BenchSupport.Step(quiet, "generation with KV cache, projections unsplit", () => unsplit = generated / Unsplit(() => BenchSupport.Best(3, () => TextGenerator.Generate(model, prompts, opts, [], 0))));
        BenchSupport.Step(quiet, "generation without KV cache", () => uncached = generated / BenchSupport.Best(2, () => TextGenerator.Generate(model, prompts, opts, [], 0, useCache: false)));
        BenchSupport.Step(quiet, "decode matmul floor", () => floor = DecodeFloorSeconds(model, genBatch));
        var (rolloutCompact, rolloutPlain) = RolloutTokensPerSecond(model, Prompts(rollout.Prompts), rollout, quiet);
        BenchSupport.Step(quiet, "matmul peak", () => matmul = BenchSupport.MatmulFlops(cfg, trainBatch * trainSeq));
        BenchSupport.Step(quiet, "forward+backward", () => stepSeconds = TrainStepSeconds(model, trainBatch, trainSeq));
        var stepFlops = TrainStepFlops(cfg, trainBatch, trainSeq);
        var parameters = model.parameters().Sum(p => p.numel());
        return new BenchResult(preset, parameters, get_num_threads(), genBatch, promptTokens, newTokens, cached, uncached,
            cached / uncached, unsplit, cached / unsplit, floor * 1e3, genBatch / uncached / floor, rollout, rolloutCompact, rolloutPlain, rolloutCompact / rolloutPlain, matmul / 1e9, stepSeconds, stepFlops / stepSeconds / 1e9, stepFlops / stepSeconds / matmul);
    }

    /// <summary>What <paramref name="measure"/> gives with every projection a single <c>linear</c> (DecodeProjection off).</summary>
    static double Unsplit(Func<double> measure)
    {
        DecodeProjection.Enabled = false;
        try { return measure(); }
        finally { DecodeProjection.Enabled = true; }
    }

    /// <summary>
    /// The least one cached decode step can cost on this machine: the step's weight products alone (every 2-D weight a
    /// token meets, the LM head included, applied to <paramref name="batch"/> rows of one token, split across threads
    /// as the decoder splits them), best of 20. At batch 1
    /// these read every weight once per token, so memory bandwidth, not op dispatch, sets this floor; a full
    /// recomputation's time per token ÷ this floor is the most a KV cache can give here.
    /// </summary>
    static double DecodeFloorSeconds(CausalLm model, int batch)
    {
        using var _ = no_grad();
        var weights = model.named_parameters()
            // The input embedding is a row lookup, not a product, unless it is also the (tied) LM head.
            .Where(p => p.parameter.dim() == 2 && (model.Config.TieWordEmbeddings
                || !(p.name.EndsWith("embed_tokens.weight", StringComparison.Ordinal) || p.name.EndsWith("embed_in.weight", StringComparison.Ordinal))))
            .Select(p => p.parameter).ToList();
        var inputs = weights.Select(w => randn(batch, w.shape[1])).ToList();
        void Once()
        {
            for (var i = 0; i < weights.Count; i++) DecodeProjection.Linear(inputs[i], weights[i], null).Dispose();
        }
        Once();
        var best = BenchSupport.Best(20, Once);
        foreach (var x in inputs) x.Dispose();
        return best;
    }

    /// <summary>
    /// Sampled rollouts (temperature 1, seeded) with compact decoding on and off, alternating, best of two each: both
    /// modes sample the same tokens, so the ratio is the optimisation's alone.
    /// </summary>
    static (double Compact, double Plain) RolloutTokensPerSecond(CausalLm model, List<int[]> prompts, RolloutShape shape, bool quiet)
    {
        var opts = new SamplingOptions { MaxNewTokens = shape.NewTokens, NumSamples = shape.Samples, Seed = 1 };
        int[] eos = [.. model.Config.EosTokenIds];
        var tokens = 0;
        double Once(bool compact) => BenchSupport.Time(() =>
            tokens = TextGenerator.Generate(model, prompts, opts, eos, 0, compact: compact).Sum(s => s.TokenIds.Length));
        double compactBest = double.MaxValue, plainBest = double.MaxValue;
        BenchSupport.Step(quiet, "rollout, compact vs plain batch", () =>
        {
            for (var i = 0; i < 2; i++)
            {
                compactBest = Math.Min(compactBest, Once(compact: true));
                plainBest = Math.Min(plainBest, Once(compact: false));
            }
        });
        return (tokens / compactBest, tokens / plainBest);
    }

    static double TrainStepSeconds(CausalLm model, int batch, int seq)
    {
        model.train();
        using var ids = randint(3, model.Config.VocabSize, [batch, seq], dtype: ScalarType.Int64);
        void Step()
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(ids);
            var loss = nn.functional.cross_entropy(logits.narrow(1, 0, seq - 1).reshape(-1, model.Config.VocabSize),
                ids.narrow(1, 1, seq - 1).reshape(-1));
            loss.backward();
            foreach (var p in model.parameters()) p.grad?.zero_();
        }
        Step();
        var best = BenchSupport.Best(3, Step);
        model.eval();
        return best;
    }

    /// <summary>6·N·tokens for the dense weights plus attention scores and mixing (QKᵀ, AV), forward ×3 for backward.</summary>
    static double TrainStepFlops(CausalLmConfig c, int batch, int seq) =>
        3 * (BenchSupport.ForwardFlopsPerToken(c) * batch * seq + BenchSupport.AttentionFlops(c, batch, seq));

    static void Print(BenchResult r)
    {
        var t = new Table().AddColumns("figure", "value");
        t.AddRow("preset / parameters / threads", $"{r.Preset} / {r.Parameters / 1e6:F1} M / {r.Threads}");
        t.AddRow($"generation, KV cache ({r.GenBatch}×({r.PromptTokens}+{r.NewTokens}) tokens)", $"{r.CachedTokensPerSecond:F1} tokens/s");
        t.AddRow("generation, full recomputation", $"{r.UncachedTokensPerSecond:F1} tokens/s");
        t.AddRow("KV-cache speed-up (goal ≥ 10×)", $"{r.CacheSpeedup:F1}×");
        t.AddRow("generation, KV cache, projections on one thread", $"{r.CachedUnsplitTokensPerSecond:F1} tokens/s ({r.DecodeSplitSpeedup:F2}× from splitting them)");
        t.AddRow("decode matmul floor (weights alone, per token)", $"{r.DecodeFloorMilliseconds:F2} ms ({1e3 / r.DecodeFloorMilliseconds * r.GenBatch:F0} tokens/s)");
        t.AddRow("KV-cache speed-up at that floor (ceiling)", $"{r.CacheSpeedupCeiling:F1}×");
        t.AddRow($"rollout, compact ({r.Rollout.Prompts} prompts × {r.Rollout.Samples} × {r.Rollout.NewTokens} tokens)", $"{r.RolloutCompactTokensPerSecond:F1} tokens/s");
        t.AddRow("rollout, plain batch (prompt repeated K times)", $"{r.RolloutPlainTokensPerSecond:F1} tokens/s");
        t.AddRow("shared-prefix speed-up (goal ≥ 1.5×)", $"{r.SharedPrefixSpeedup:F2}×");
        t.AddRow("matmul peak", $"{r.MatmulGflops:F1} GFLOP/s");
        t.AddRow("forward+backward step", $"{r.TrainStepSeconds:F3} s, {r.TrainStepGflops:F1} GFLOP/s");
        t.AddRow("step FLOP/s ÷ matmul FLOP/s (goal ≥ 0.5)", $"{r.TrainToMatmulRatio:F2}");
        AnsiConsole.Write(t);
    }
}
