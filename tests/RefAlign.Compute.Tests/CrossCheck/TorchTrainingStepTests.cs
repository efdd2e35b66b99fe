using System.Text.Json.Nodes;
using RefAlign.Compute.Data;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests.CrossCheck;

/// <summary>
/// One training step of every algorithm against PyTorch itself (tests/crosscheck/torchref/train_step.py: the forward
/// written out in torch, the loss from docs/algorithms.md, autograd, <c>clip_grad_norm_</c>, <c>torch.optim.AdamW</c>
/// with LambdaLR warmup). Our side is what <c>refalign train</c> runs (the loop, the local services, the learner) for one
/// step on tiny Llama and GPT-NeoX folders from <c>refalign model init</c>'s presets, in float32 and in bfloat16 with
/// float32 masters, with and without LoRA. The rows the learner received (token ids of prompts, completions and
/// prompted queries; the advantages of the sampled RefAlign responses) are handed to torch, which recomputes everything
/// else (reference log-probs included) from the same starting weights and compares the loss, the gradients, their norm
/// and the updated weights of our checkpoint.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class TorchTrainingStepTests(TorchTrainingStepTests.Workspace workspace, ITestOutputHelper output)
    : IClassFixture<TorchTrainingStepTests.Workspace>
{
    /// <summary>The model, data and encoder folders both tests start from, and their runs (the case names differ).</summary>
    public sealed class Workspace : IDisposable
    {
        public string Root { get; } = Directory.CreateTempSubdirectory("refalign-torchstep-").FullName;

        public void Dispose() => Directory.Delete(Root, recursive: true);
    }

    // float32: the same math through different kernels (libtorch 2.10 here, torch 1.13 there), so rounding only.
    // Gradients are compared relative to the largest gradient entry; our gradients are read back from AdamW's first
    // moment. Weights are compared where the gradient is clear of both sides' rounding (AdamW's first step is about
    // lr·sign(g), so a gradient entry that is rounding noise flips freely); torch's AdamW applied to our gradients must
    // reproduce our weights to float32 rounding.
    const double LossRelTol = 1e-6, GradNormRelTol = 1e-5, GradRelTol = 1e-5, WeightTol = 1e-5, AdamWTol = 1e-7;

    // bfloat16 keeps 8 significant bits (relative spacing 2^-7) and rounds every activation, differently in each
    // library's kernels, so the two sides cannot agree to float32 tolerances. Each is measured against the float64 value
    // of the same step from the same (bfloat16) weights: ours must stay within a fraction of bfloat16's spacing of it,
    // and summed over the cases be about as close to it as PyTorch's own bfloat16 step, or closer.
    const double Bf16LossTol = 1.0 / 1024, Bf16GradTol = 1.0 / 64, Bf16NormTol = 1.0 / 128;

    readonly string _root = workspace.Root;
    readonly ITestOutputHelper _output = output;

    sealed record Case(Algorithm Algorithm, string Arch, ModelDType Dtype, bool Lora, double MaxGradNorm)
    {
        public string Name => $"{Algorithm}-{Arch}-{(Dtype == ModelDType.BFloat16 ? "bf16" : "f32")}{(Lora ? "-lora" : "")}".ToLowerInvariant();
    }

    static readonly Algorithm[] All = [Algorithm.Sft, Algorithm.Dpo, Algorithm.CDpo, Algorithm.Ipo, Algorithm.SrDpo, Algorithm.SrIpo, Algorithm.RefAlign];

    /// <summary>
    /// float32: every algorithm on both architectures, and LoRA for SFT, Sr-DPO and RefAlign on both. bfloat16: every
    /// algorithm once (the architectures alternating) and LoRA on both architectures.
    /// </summary>
    static IEnumerable<Case> Cases(ModelDType dtype)
    {
        var clip = 0;
        string[] archs = ["llama", "gpt-neox"];
        // Alternate clipping on (a bound below the norm) and off, so both branches of clip_grad_norm_ are compared.
        double Clip() => clip++ % 2 == 0 ? 0.05 : 0;
        if (dtype == ModelDType.BFloat16)
        {
            for (var i = 0; i < All.Length; i++) yield return new Case(All[i], archs[i % 2], dtype, Lora: false, Clip());
            yield return new Case(Algorithm.SrDpo, "llama", dtype, Lora: true, Clip());
            yield return new Case(Algorithm.RefAlign, "gpt-neox", dtype, Lora: true, Clip());
            yield break;
        }
        foreach (var arch in archs)
        {
            foreach (var a in All) yield return new Case(a, arch, dtype, Lora: false, Clip());
            foreach (var a in new[] { Algorithm.Sft, Algorithm.SrDpo, Algorithm.RefAlign }) yield return new Case(a, arch, dtype, Lora: true, Clip());
        }
    }

    string Folder(string name, Action<string> create)
    {
        var dir = Path.Combine(_root, name);
        if (!Directory.Exists(dir)) create(dir);
        return dir;
    }

    [Fact]
    public async Task One_float32_step_of_every_algorithm_equals_pytorch() => await CompareAsync([.. Cases(ModelDType.Float32)], bfloat16: false);

    [Fact]
    public async Task One_bfloat16_step_with_float32_masters_against_pytorch() => await CompareAsync([.. Cases(ModelDType.BFloat16)], bfloat16: true);

    async Task CompareAsync(IReadOnlyList<Case> cases, bool bfloat16)
    {
        var files = cases.Select(RunOurs).ToList();
        var results = await TorchReference.RunAsync("train-step", files);
        Assert.Equal(cases.Count, results.Count);
        var failures = new List<string>();
        foreach (var r in results)
        {
            double N(string key) => TorchReference.Number(r, key);
            var line = $"{r["name"],-27} loss {N("loss_ours"),12:G8} rel {N("loss_rel_diff"):E1} | grad norm {N("grad_norm_ours"),9:G6} rel {N("grad_norm_rel_diff"):E1} | " +
                       $"grads rel {N("grad_rel_diff"):E1} | weights {N("max_resolved_weight_diff"):E1} (all {N("max_weight_diff"):E1}, {N("unresolved_entries")}/{N("entries")} at the noise floor; " +
                       $"update ≤ {N("max_update"):E1}) | AdamW on our grads {N("adamw_weight_diff"):E1} | from float64: loss ours {N("loss_ours_err_f64"):E1} torch {N("loss_torch_err_f64"):E1}, " +
                       $"grads ours {N("grad_ours_err_f64"):E1} torch {N("grad_torch_err_f64"):E1}, norm ours {N("grad_norm_ours_err_f64"):E1} torch {N("grad_norm_torch_err_f64"):E1}";
            _output.WriteLine(line);
            var agrees = N("adamw_weight_diff") <= AdamWTol && (bfloat16
                ? N("loss_ours_err_f64") <= Bf16LossTol && N("grad_ours_err_f64") <= Bf16GradTol && N("grad_norm_ours_err_f64") <= Bf16NormTol
                  // the model's bfloat16 weights are exactly the masters rounded (none to round for float32 adapters)
                  && (r["rounded_weight_diff"] is not JsonValue rounded || rounded.GetValue<double>() == 0)
                : N("loss_rel_diff") <= LossRelTol && N("grad_norm_rel_diff") <= GradNormRelTol && N("grad_rel_diff") <= GradRelTol
                  && N("max_resolved_weight_diff") <= WeightTol);
            if (!agrees) failures.Add($"{line}; worst tensor {r["worst_tensor"]}");
        }
        if (bfloat16)
            // The losses of the two are about even (their errors come mostly from the same last roundings), so the loss
            // gets a factor 1.5 of room; our gradients and norms are several times closer than torch 1.13's.
            foreach (var (what, factor) in new[] { ("loss", 1.5), ("grad", 1.0), ("grad_norm", 1.0) })
            {
                double ours = results.Sum(r => TorchReference.Number(r, $"{what}_ours_err_f64")), torch = results.Sum(r => TorchReference.Number(r, $"{what}_torch_err_f64"));
                _output.WriteLine($"bfloat16 {what}: summed distance from float64 ours {ours:E2}, torch {torch:E2}");
                if (ours > factor * torch)
                    failures.Add($"bfloat16 {what}: ours is further from float64 than {factor}× torch's bfloat16 step ({ours:E2} vs {torch:E2} summed over the cases)");
            }
        Assert.True(failures.Count == 0, "steps that differ from PyTorch:\n" + string.Join("\n", failures));
    }

    /// <summary>One step of <paramref name="c"/> here; returns the case file torch reads.</summary>
    string RunOurs(Case c)
    {
        var policy = Folder($"policy-{c.Arch}", d => ModelPresets.Initialize(d, "tiny", c.Arch, seed: 11));
        // Full fine-tuning is scored against a second model (so the margins are not zero); LoRA against its own base.
        string? reference = c.Lora ? null : Folder($"reference-{c.Arch}", d => ModelPresets.Initialize(d, "tiny", c.Arch, seed: 12));
        var data = Folder("data", DemoData.WriteTo);
        var encoder = Folder("encoder", d => EncoderPresets.Initialize(d, "tiny-bert", seed: 5));
        var output = Path.Combine(_root, "runs", c.Name);
        var refAlign = c.Algorithm == Algorithm.RefAlign;
        var config = new RunConfig
        {
            Name = c.Name, Algorithm = c.Algorithm, Seed = 3, OutputDir = output,
            Policy = new PolicySection
            {
                Model = policy, ReferenceModel = reference, Dtype = c.Dtype,
                Lora = c.Lora ? new LoraSection { Rank = 4, Alpha = 8 } : null,
            },
            Data = new DataSection
            {
                Path = Path.Combine(data, refAlign ? DemoData.ReferencesFileName : DemoData.PreferencesFileName),
                MaxLength = 48, MaxPromptLength = 24, EvalFraction = 0,
            },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-3, WeightDecay = 0.01, WarmupSteps = 3, MaxGradNorm = c.MaxGradNorm },
            Preference = new PreferenceSection
            {
                LabelSmoothing = c.Algorithm == Algorithm.CDpo ? 0.1 : 0,
                // IPO on per-token means, as TRL feeds it (the other losses on sums): both reductions are compared.
                LogpReduction = c.Algorithm is Algorithm.Ipo or Algorithm.SrIpo ? Scoring.LogProbReduction.Mean : Scoring.LogProbReduction.Sum,
            },
            RefAlign = new RefAlignSection { RewardModel = encoder, NumSamples = 2, MaxNewTokens = 6 },
            BatchSize = refAlign ? 2 : 4, MicroBatchSize = 2, MaxSteps = 1, EvalEvery = 0, CheckpointEvery = 1,
        }.Validate();

        var tokenizer = TextTokenizer.Load(policy);
        var trainingData = TrainingData.Load(config, tokenizer);
        using var services = new LocalTrainingServices(config, tokenizer, trainingData);
        string? initial = null;
        if (services.Learner.Lora is { } lora)
        {
            // PEFT starts B at zero, which leaves A without a gradient on the first step: start from a seeded non-zero
            // B so both factors are compared (torch starts from exactly these values).
            using (no_grad())
            using (var gen = new Generator(17))
                foreach (var (name, p) in lora.named_parameters().Where(p => p.name.EndsWith("lora_B.weight", StringComparison.Ordinal)))
                    p.copy_(randn(p.shape, generator: gen) * 0.05);
            initial = Path.Combine(_root, $"{c.Name}-initial-adapter.safetensors");
            SafeTensors.SaveFile(initial, lora.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter));
        }
        var recording = new RecordingServices(services);
        var recorder = new RunRecorder();
        new TrainingRun(config.Name, config, trainingData, recording, recorder).RunAsync().GetAwaiter().GetResult();
        var metrics = Assert.Single(recorder.Steps).Metrics;
        var checkpoint = Assert.Single(recorder.Checkpoints).Folder;

        var json = new JsonObject
        {
            ["name"] = c.Name,
            ["algorithm"] = AlgorithmName(c.Algorithm),
            ["policy"] = policy, ["reference"] = reference,
            ["dtype"] = c.Dtype == ModelDType.BFloat16 ? "bfloat16" : "float32",
            ["lora"] = c.Lora ? new JsonObject { ["rank"] = 4, ["alpha"] = 8.0, ["initial"] = initial } : null,
            ["beta"] = config.Preference.Beta, ["label_smoothing"] = config.Preference.LabelSmoothing, ["lambda"] = config.Preference.Lambda,
            ["reduction"] = config.Preference.LogpReduction == Scoring.LogProbReduction.Sum ? "sum" : "mean",
            ["optimizer"] = new JsonObject
            {
                ["lr"] = config.Optimizer.LearningRate, ["beta1"] = 0.9, ["beta2"] = 0.999, ["eps"] = 1e-8,
                ["weight_decay"] = config.Optimizer.WeightDecay, ["max_grad_norm"] = config.Optimizer.MaxGradNorm,
                ["warmup_steps"] = config.Optimizer.WarmupSteps,
            },
            ["rows"] = recording.Rows,
            ["ours"] = new JsonObject { ["loss"] = metrics["loss"], ["grad_norm"] = metrics["grad_norm"], ["checkpoint"] = checkpoint },
        };
        var file = Path.Combine(_root, $"{c.Name}.json");
        File.WriteAllText(file, json.ToJsonString());
        return file;
    }

    static string AlgorithmName(Algorithm a) => a switch
    {
        Algorithm.Sft => "sft", Algorithm.Dpo => "dpo", Algorithm.CDpo => "cdpo", Algorithm.Ipo => "ipo",
        Algorithm.SrDpo => "sr_dpo", Algorithm.SrIpo => "sr_ipo", _ => "refalign",
    };

    static JsonArray Ids(int[] ids) => new([.. ids.Select(i => (JsonNode)i)]);

    /// <summary>The local services, recording the rows each learner call receives (what torch is given).</summary>
    sealed class RecordingServices(LocalTrainingServices inner) : ITrainingServices
    {
        public JsonArray Rows { get; } = [];

        public Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken c) => inner.GenerateAsync(step, prompts, c);
        public Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken c) => inner.SimilarityAsync(candidates, references, c);
        public Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken c) => inner.ReferenceAsync(pairs, prompted, c);
        public Task<IReadOnlyDictionary<string, double>> EvaluateSftAsync(IReadOnlyList<SftSequence> rows, CancellationToken c) => inner.EvaluateSftAsync(rows, c);
        public Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken c) => inner.EvaluatePreferenceAsync(rows, c);
        public Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken c) => inner.CheckpointAsync(manifest, c);
        public Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken c) => inner.RestoreLatestAsync(c);

        public Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken c)
        {
            foreach (var r in rows)
                Rows.Add(new JsonObject { ["prompt"] = Ids(r.Prompt), ["completion"] = Ids(r.Completion), ["advantage"] = r.Advantage });
            return inner.LearnRefAlignAsync(step, rows, c);
        }

        public Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken c)
        {
            foreach (var r in rows)
                Rows.Add(new JsonObject
                {
                    ["prompt"] = Ids(r.Pair.Prompt), ["chosen"] = Ids(r.Pair.Chosen), ["rejected"] = Ids(r.Pair.Rejected),
                    ["prompted"] = r.Pair.PromptedPrompt is { } p ? Ids(p) : null,
                });
            return inner.LearnPreferenceAsync(step, rows, c);
        }

        public Task<StepResult> LearnSftAsync(int step, IReadOnlyList<SftSequence> rows, CancellationToken c)
        {
            foreach (var r in rows) Rows.Add(new JsonObject { ["prompt"] = Ids(r.Prompt), ["completion"] = Ids(r.Completion) });
            return inner.LearnSftAsync(step, rows, c);
        }
    }
}
