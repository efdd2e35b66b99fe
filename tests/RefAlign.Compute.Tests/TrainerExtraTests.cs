using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Compute.Training.ReferenceCache;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// More of the single-process trainer: LoRA preference training against the adapters-off reference, gradient
/// accumulation inside a run, and an atomic checkpoint under a failure injected mid-save.
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class TrainerExtraTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-train-extra-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Model()
    {
        var dir = Path.Combine(_root, "policy");
        if (!Directory.Exists(dir)) ModelPresets.Initialize(dir, "tiny", "llama", seed: 1);
        return dir;
    }

    string PreferenceFile()
    {
        var dir = Path.Combine(_root, "data");
        if (!Directory.Exists(dir)) DemoData.WriteTo(dir);
        return Path.Combine(dir, DemoData.PreferencesFileName);
    }

    RunConfig Preference(Algorithm algorithm, string output, int steps) => new RunConfig
    {
        Name = "extra", Algorithm = algorithm, Seed = 3, OutputDir = Path.Combine(_root, output),
        Policy = new PolicySection { Model = Model() },
        Data = new DataSection { Path = PreferenceFile(), MaxLength = 64, MaxPromptLength = 32, EvalFraction = 0.1 },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 2e-3, WarmupSteps = 1 },
        BatchSize = 8, MicroBatchSize = 8, MaxSteps = steps, EvalEvery = 0, CheckpointEvery = 0,
    }.Validate();

    static (TrainingData Data, LocalTrainingServices Services) Open(RunConfig cfg)
    {
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        return (data, new LocalTrainingServices(cfg, tok, data));
    }

    static (RunRecorder Rec, int Done) Run(RunConfig cfg, LocalTrainingServices services, TrainingData data)
    {
        var rec = new RunRecorder();
        var done = new TrainingRun(cfg.Name, cfg, data, services, rec).RunAsync().GetAwaiter().GetResult();
        return (rec, done);
    }

    /// <summary>Takes its time over each step, so a time-based checkpoint cadence has something to measure.</summary>
    sealed class SlowSteps(TimeSpan perStep) : IRunObserver
    {
        public List<int> Checkpoints { get; } = [];

        public async Task OnStepAsync(StepReport report) => await Task.Delay(perStep);

        public void OnCheckpoint(int step, string folder) => Checkpoints.Add(step);
    }

    [Fact]
    public async Task CheckpointEverySecondsCheckpointsByTimeBesidesSteps()
    {
        var cfg = Preference(Algorithm.Dpo, "by-time", steps: 6) with { CheckpointEvery = 0, CheckpointEverySeconds = 1 };
        var (data, services) = Open(cfg);
        using var _ = services;
        var slow = new SlowSteps(TimeSpan.FromMilliseconds(600));
        await new TrainingRun(cfg.Name, cfg, data, services, slow).RunAsync();
        // By steps alone (checkpoint_every 0) only the end would be saved; a second or more between steps adds more.
        Assert.Equal(6, slow.Checkpoints[^1]);
        Assert.True(slow.Checkpoints.Count >= 3, $"checkpoints at {string.Join(", ", slow.Checkpoints)}");
        Assert.All(slow.Checkpoints.Zip(slow.Checkpoints.Skip(1)), p => Assert.True(p.Second > p.First));
    }

    [Fact]
    public void LoraPreferenceRunUsesTheAdaptersOffBaseAsReferenceAndTrainsOnlyAdapters()
    {
        var cfg = Preference(Algorithm.SrDpo, "lora", steps: 10) with
        {
            Policy = new PolicySection { Model = Model(), Lora = new LoraSection { Rank = 4, Alpha = 8 } },
            Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 1 },
        };
        using var baseModel = CausalLm.FromPretrained(cfg.Policy.Model);
        var (data, services) = Open(cfg);
        using var _ = services;
        var (rec, done) = Run(cfg, services, data);
        Assert.Equal(10, done);
        var lora = services.Learner.Lora;
        Assert.NotNull(lora);

        // Adapters start with B = 0: the policy is the reference, so step 0's implicit rewards and Δ are zero.
        var first = rec.Steps[0].Metrics;
        foreach (var k in new[] { "rewards/chosen", "rewards/rejected", "rewards/margins", "refine/delta" })
            Assert.True(Math.Abs(first[k]) < 1e-4, $"{k} at step 0 is {first[k]} (policy ≠ reference at init)");
        Assert.Equal(Math.Log(2), first["loss"], 4);

        // The reference is the base weights (adapters off), not a second model: its cache is keyed by their hash.
        var hash = ReferenceLogProbCache.HashWeights(baseModel);
        var cacheFiles = Directory.GetFiles(Path.Combine(cfg.OutputDir, "reference_cache")).Select(f => Path.GetFileName(f)).ToArray();
        Assert.Equal(new[] { hash + ".jsonl" }, cacheFiles);

        // Training the adapters alone separates chosen from rejected (step 0's accuracy is a coin flip on ~0 rewards).
        var late = rec.Steps.TakeLast(4).Average(s => s.Metrics["rewards/accuracies"]);
        var trace = string.Join(" ", rec.Steps.Select(s => $"{s.Metrics["rewards/accuracies"]:F2}/{s.Metrics["rewards/margins"]:F3}"));
        Assert.True(late >= 0.85, $"accuracy/margin per step: {trace}");
        Assert.True(rec.Steps.TakeLast(4).Average(s => s.Metrics["rewards/margins"]) > 0.15, $"accuracy/margin per step: {trace}");

        // Only adapter tensors changed: every base weight is bitwise what was loaded, and the B matrices moved off 0.
        var trained = services.Learner.Policy.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var loaded = baseModel.named_parameters().ToList();
        Assert.Equal(loaded.Count, trained.Count);
        foreach (var (name, p) in loaded)
            Assert.True(p.bytes.SequenceEqual(trained[name].bytes), $"base weight {name} changed during LoRA training");
        var bs = lora.named_parameters().Where(p => p.name.EndsWith("lora_B.weight", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(bs);
        Assert.All(bs, b => Assert.True(b.parameter.abs().max().item<float>() > 0, $"{b.name} never trained"));
    }

    [Fact]
    public void GradientAccumulationMatchesTheFullBatchStep()
    {
        var full = Preference(Algorithm.Dpo, "accum-8", steps: 3);
        var micro = full with { OutputDir = Path.Combine(_root, "accum-1"), MicroBatchSize = 1 };
        List<StepReport> Steps(RunConfig c)
        {
            var (data, services) = Open(c);
            using var _ = services;
            var (rec, done) = Run(c, services, data);
            Assert.Equal(3, done);
            return rec.Steps;
        }
        var a = Steps(full);
        var b = Steps(micro);
        for (var i = 0; i < 3; i++)
        {
            // Loss after each update (the direction is checked), and the clipped gradient's norm (its scale: an
            // adaptive optimizer would hide a missing 1/k factor in the update itself).
            Assert.True(Math.Abs(a[i].Metrics["loss"] - b[i].Metrics["loss"]) < 1e-4,
                $"step {i}: loss {a[i].Metrics["loss"]} (batch 8) vs {b[i].Metrics["loss"]} (micro-batch 1)");
            var g = a[i].Metrics["grad_norm"];
            Assert.True(Math.Abs(g - b[i].Metrics["grad_norm"]) < 1e-4 * Math.Max(1, g),
                $"step {i}: grad_norm {g} vs {b[i].Metrics["grad_norm"]}");
        }
        Assert.NotEqual(a[0].Metrics["loss"], a[2].Metrics["loss"]); // the steps did change the policy
    }

    [Fact]
    public void FailedCheckpointLeavesThePreviousOneLatestAndTheRunResumesFromIt()
    {
        var cfg = Preference(Algorithm.SrDpo, "atomic", steps: 4) with { CheckpointEvery = 2 };
        var (data, services) = Open(cfg);
        var store = services.Checkpoints;
        var injected = 0;
        var rec = new RunRecorder((step, _) =>
        {
            // Once step 2 is safely saved, every later save dies after its contents and manifest are written and
            // before the rename that publishes it — the worst moment for a crash.
            if (step == 2)
                store.BeforeCommit = temp =>
                {
                    Assert.True(File.Exists(Path.Combine(temp, CheckpointManifest.FileName)));
                    injected++;
                    throw new IOException("injected: disk failure while committing the checkpoint");
                };
        });
        var failure = Assert.Throws<IOException>(() => new TrainingRun(cfg.Name, cfg, data, services, rec).RunAsync().GetAwaiter().GetResult());
        Assert.Contains("injected", failure.Message);
        Assert.Equal(1, injected);
        Assert.Equal(4, rec.Steps.Count); // steps 2 and 3 ran; only their checkpoint failed
        services.Dispose();

        var root = Path.Combine(cfg.OutputDir, "checkpoints");
        var fresh = new CheckpointStore(root, cfg.KeepCheckpoints);
        var latest = fresh.Latest();
        Assert.NotNull(latest);
        Assert.Equal(2, latest.Value.Manifest.Step);
        Assert.Equal([2], fresh.Steps());
        Assert.Equal(CheckpointStore.FolderName(2), File.ReadAllText(Path.Combine(root, CheckpointStore.LatestFileName)).Trim());
        Assert.False(Directory.Exists(Path.Combine(root, CheckpointStore.FolderName(4))));
        Assert.Empty(Directory.EnumerateFileSystemEntries(root, ".tmp-*"));
        foreach (var f in new[] { "policy/model.safetensors", "policy/config.json", "optimizer.safetensors", "rng.safetensors" })
            Assert.True(File.Exists(Path.Combine(latest.Value.Folder, f)), $"checkpoint 2 lacks {f}");

        // Resuming restarts from step 2 and replays steps 2 and 3 exactly.
        var (data2, services2) = Open(cfg);
        using var _ = services2;
        var (rec2, done) = Run(cfg, services2, data2);
        Assert.Equal(4, done);
        Assert.Equal([2, 3], rec2.Steps.Select(s => s.Step));
        Assert.Equal(rec.Steps.Skip(2).Select(s => s.Metrics["loss"]), rec2.Steps.Select(s => s.Metrics["loss"]));
        Assert.Equal(4, services2.Checkpoints.Latest()!.Value.Manifest.Step);
    }
}
