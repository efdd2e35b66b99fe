using System.Text.Json.Nodes;
using RefAlign.Compute.Data;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Supervised fine-tuning: the loss is exactly the completion tokens' cross-entropy (checked against a hand computation
/// from the logits), micro-batching does not change a step, training lowers the held-out loss on the demo data, resume
/// is bitwise, and every data layout the papers' first stages use reads as (prompt, completion).
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class SftTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-sft-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Model()
    {
        var dir = Path.Combine(_root, "policy");
        if (!Directory.Exists(dir)) ModelPresets.Initialize(dir, "tiny", "llama", seed: 1);
        return dir;
    }

    string Data()
    {
        var dir = Path.Combine(_root, "data");
        if (!Directory.Exists(dir)) DemoData.WriteTo(dir);
        return Path.Combine(dir, DemoData.ReferencesFileName);
    }

    RunConfig Sft(string output, int steps, int microBatch = 4, double lr = 5e-3) => new RunConfig
    {
        Name = "sft", Algorithm = Algorithm.Sft, Seed = 4, OutputDir = Path.Combine(_root, output),
        Policy = new PolicySection { Model = Model() },
        Data = new DataSection { Path = Data(), MaxLength = 96, MaxPromptLength = 48, EvalFraction = 0.15 },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = lr, WarmupSteps = 0 },
        BatchSize = 8, MicroBatchSize = microBatch, MaxSteps = steps, EvalEvery = steps, EvalExamples = 16, CheckpointEvery = 0,
    }.Validate();

    static (RunRecorder Rec, LocalTrainingServices Services, TrainingData Data) Run(RunConfig cfg)
    {
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        var services = new LocalTrainingServices(cfg, tok, data);
        var rec = new RunRecorder();
        new TrainingRun(cfg.Name, cfg, data, services, rec).RunAsync().GetAwaiter().GetResult();
        return (rec, services, data);
    }

    [Fact]
    public void The_loss_is_the_mean_cross_entropy_of_completion_tokens_only_as_computed_by_hand()
    {
        var cfg = Sft("hand", steps: 1);
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        using var services = new LocalTrainingServices(cfg, tok, data);
        var rows = data.BatchIndices(0, cfg.BatchSize, cfg.Seed, true).Select(i => data.TrainSequences[i]).ToList();
        Assert.Contains(rows, r => r.Prompt.Length > 3 && r.Completion.Length > 3);

        // By hand: each row alone (no padding), log-softmax in double, −log p of each completion token given what precedes it.
        double nll = 0;
        var tokens = 0;
        var policy = services.Learner.Policy;
        policy.eval();
        using (no_grad())
        {
            foreach (var r in rows)
            {
                long[] ids = [.. r.Prompt, .. r.Completion];
                using var logits = policy.Forward(tensor(ids, [1, ids.Length])).to(ScalarType.Float64).log_softmax(-1);
                var logp = logits.data<double>().ToArray();
                var vocab = (int)logits.shape[2];
                for (var t = r.Prompt.Length; t < ids.Length; t++)
                {
                    nll -= logp[(t - 1) * vocab + (int)ids[t]];
                    tokens++;
                }
            }
        }
        var step = services.Learner.SftStep(0, rows);
        Assert.Equal(tokens, step.Metrics[Learner.SftTokens]);
        Assert.Equal(nll / tokens, step.Metrics[Learner.SftLoss], 5);
        Assert.Equal(1, step.Metrics[Learner.SftPerplexity] / Math.Exp(nll / tokens), 5);
    }

    [Fact]
    public void Micro_batching_does_not_change_a_step()
    {
        var (whole, s1, _) = Run(Sft("mb8", steps: 2, microBatch: 8) with { EvalEvery = 0 });
        using var w1 = s1;
        var (split, s2, _) = Run(Sft("mb3", steps: 2, microBatch: 3) with { EvalEvery = 0 });
        using var w2 = s2;
        // Same loss and the same gradient (its norm, before clipping): each micro-batch weighs in by its share of tokens.
        // (Weights are not compared: Adam turns float32 rounding of near-zero gradients into lr-sized differences.)
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(whole.Steps[i].Metrics["loss"], split.Steps[i].Metrics["loss"], 5);
            Assert.Equal(1, split.Steps[i].Metrics["grad_norm"] / whole.Steps[i].Metrics["grad_norm"], 5);
        }
    }

    [Fact]
    public async Task Training_lowers_the_held_out_loss_on_the_demo_data()
    {
        var cfg = Sft("learn", steps: 20) with { EvalEvery = 10 };
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        using var services = new LocalTrainingServices(cfg, tok, data);
        var before = services.Learner.EvaluateSft(data.EvalSequences)["eval/loss"];
        var rec = new RunRecorder();
        await new TrainingRun(cfg.Name, cfg, data, services, rec).RunAsync();
        var after = rec.Evals[^1]["eval/loss"];
        Assert.True(after < before - 0.5, $"held-out loss {before:F3} → {after:F3}");
        Assert.True(rec.Evals[^1]["eval/perplexity"] < Math.Exp(before));
        Assert.True(rec.Steps.TakeLast(3).Average(s => s.Metrics["loss"]) < rec.Steps.Take(3).Average(s => s.Metrics["loss"]));
    }

    [Fact]
    public async Task A_run_writes_every_steps_scalars_to_a_tensorboard_event_file()
    {
        var cfg = Sft("tensorboard", steps: 3) with { EvalEvery = 3 };
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        using var services = new LocalTrainingServices(cfg, tok, data);
        var rec = new RunRecorder();
        string path;
        using (var log = new RefAlign.Compute.Telemetry.TensorBoardLog(cfg.OutputDir))
        {
            path = log.Path;
            await new TrainingRun(cfg.Name, cfg, data, services, new Both(rec, log)).RunAsync();
        }
        Assert.StartsWith("events.out.tfevents.", Path.GetFileName(path));
        var events = TensorBoardEvents.Read(path);
        Assert.Equal("brain.Event:2", events.FileVersion);
        foreach (var s in rec.Steps)
            foreach (var (tag, value) in s.Metrics)
                Assert.Equal((float)value, Assert.Single(events.Scalars, x => x.Step == s.Step + 1 && x.Tag == tag).Value);
        Assert.Contains(events.Scalars, x => x.Step == 1 && x.Tag == "phase/learn");
        Assert.Equal((float)rec.Evals[^1]["eval/loss"], Assert.Single(events.Scalars, x => x.Tag == "eval/loss").Value);
    }

    sealed class Both(IRunObserver a, IRunObserver b) : IRunObserver
    {
        public void OnStep(StepReport r) { a.OnStep(r); b.OnStep(r); }
        public void OnEval(int step, IReadOnlyDictionary<string, double> m) { a.OnEval(step, m); b.OnEval(step, m); }
    }

    [Fact]
    public void Resuming_an_sft_run_is_bitwise()
    {
        var straight = Sft("straight", steps: 6) with { EvalEvery = 0 };
        var (a, sa, _) = Run(straight);
        sa.Dispose();
        var interrupted = straight with { OutputDir = Path.Combine(_root, "interrupted"), MaxSteps = 3, CheckpointEvery = 3 };
        var (b1, sb1, _) = Run(interrupted);
        sb1.Dispose();
        var (b2, sb2, _) = Run(interrupted with { MaxSteps = 6 });
        sb2.Dispose();
        Assert.Equal(a.Steps.Select(s => s.Metrics["loss"]), b1.Steps.Concat(b2.Steps).Select(s => s.Metrics["loss"]));
        Assert.Equal(a.Steps.Select(s => s.Metrics["grad_norm"]), b1.Steps.Concat(b2.Steps).Select(s => s.Metrics["grad_norm"]));
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("mistral")]
    [InlineData("gpt-neox")]
    public void A_packed_row_computes_each_example_as_it_would_alone(string arch)
    {
        var dir = Path.Combine(_root, arch);
        ModelPresets.Initialize(dir, "tiny", arch, seed: 3);
        using var model = CausalLm.FromPretrained(dir);
        int[][] examples = [[5, 9, 17, 4, 22], [7, 3], [11, 12, 13, 14, 15, 16, 8], [30, 31, 32]];
        var batch = Scoring.SequenceCollator.Pack([.. examples.Select(e => (e[..1], e[1..]))], maxLength: 12, padId: 0);
        Assert.Equal(2, batch.Rows); // 5 + 2 fit in 12; 7 + 3 fit in the next row
        using var _ = no_grad();
        using var packed = model.ForwardPacked(tensor(batch.InputIds, [batch.Rows, batch.Length]), tensor(batch.AttentionMask, [batch.Rows, batch.Length]));
        var offsets = new[] { (0, 0), (0, 5), (1, 0), (1, 7) };
        for (var i = 0; i < examples.Length; i++)
        {
            using var alone = model.Forward(tensor(examples[i].Select(x => (long)x).ToArray(), [1, examples[i].Length]));
            var (row, at) = offsets[i];
            using var slice = packed.narrow(0, row, 1).narrow(1, at, examples[i].Length);
            Assert.True(slice.allclose(alone, rtol: 1e-4, atol: 1e-5), $"{arch}: example {i}, max |Δ| {(slice - alone).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void Packing_gives_the_same_steps_with_fewer_rows()
    {
        var (plain, s1, _) = Run(Sft("unpacked", steps: 3) with { EvalEvery = 3 });
        using var w1 = s1;
        var packedConfig = Sft("packed", steps: 3) with { EvalEvery = 3 };
        var (packed, s2, _) = Run(packedConfig with { Data = packedConfig.Data with { Packing = true } });
        using var w2 = s2;
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(plain.Steps[i].Metrics["loss"], packed.Steps[i].Metrics["loss"], 4);
            Assert.Equal(1, packed.Steps[i].Metrics["grad_norm"] / plain.Steps[i].Metrics["grad_norm"], 3);
        }
        Assert.Equal(plain.Evals[^1]["eval/loss"], packed.Evals[^1]["eval/loss"], 3);
    }

    [Fact]
    public void Packing_is_refused_outside_sft_and_sft_takes_every_layout()
    {
        var sft = Sft("layouts", steps: 1);
        var e = Assert.Throws<InvalidRunConfigException>(() => (sft with { Algorithm = Algorithm.Dpo, Data = sft.Data with { Packing = true } }).Validate());
        Assert.Equal("data.packing", e.Field);
        foreach (var layout in Enum.GetValues<DataLayout>()) (sft with { Data = sft.Data with { Layout = layout } }).Validate();
    }

    string Jsonl(string name, params JsonObject[] records)
    {
        var path = Path.Combine(_root, name);
        File.WriteAllLines(path, records.Select(r => r.ToJsonString()));
        return path;
    }

    [Fact]
    public void Every_first_stage_layout_reads_as_prompt_and_completion()
    {
        var plain = SftDataset.Load(Jsonl("plain.jsonl", new JsonObject { ["prompt"] = "Q?", ["completion"] = "A." }));
        Assert.Equal(("Q?", "A."), (plain.Examples[0].Prompt, plain.Examples[0].Completion));

        // HH-RLHF: the chosen dialogue split at its last Assistant turn, as the DPO reference code builds its SFT set.
        var hh = SftDataset.Load(Jsonl("hh.jsonl", new JsonObject
        {
            ["chosen"] = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Name a color\n\nAssistant: Blue.",
            ["rejected"] = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Name a color\n\nAssistant: No.",
        }));
        Assert.Equal(("\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Name a color\n\nAssistant:", " Blue."), (hh.Examples[0].Prompt, hh.Examples[0].Completion));

        var uf = SftDataset.Load(Jsonl("uf.jsonl", new JsonObject
        {
            ["prompt"] = "Why?",
            ["chosen"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Why?" }, new JsonObject { ["role"] = "assistant", ["content"] = "Because." }),
            ["rejected"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Why?" }, new JsonObject { ["role"] = "assistant", ["content"] = "No." }),
        }));
        Assert.Equal(("Why?", "Because."), (uf.Examples[0].Prompt, uf.Examples[0].Completion));

        // CONQORD step 1: the confidence tail stays in the completion, the model learns to state it.
        var conqord = SftDataset.Load(Jsonl("conqord.jsonl", new JsonObject
        {
            ["prompt"] = "\n\nHuman: 2+2?\n\nAssistant:", ["chosen"] = " 4. ### Confidence: 0.9.", ["rejected"] = " 5. ### Confidence: 0.2.",
        }), DataLayout.Conqord);
        Assert.Equal(" 4. ### Confidence: 0.9.", conqord.Examples[0].Completion);

        var reference = SftDataset.Load(Jsonl("ref.jsonl", new JsonObject { ["prompt"] = "P", ["reference"] = "R" }));
        Assert.Equal("R", reference.Examples[0].Completion);

        var bad = Assert.Throws<ModelFormatException>(() => SftDataset.Load(Jsonl("bad.jsonl", new JsonObject { ["question"] = "x" })));
        Assert.Contains("bad.jsonl:1", bad.Message);
        Assert.Contains("SFT data layout", bad.Message);
        var empty = Assert.Throws<ModelFormatException>(() => SftDataset.Load(Jsonl("empty.jsonl",
            new JsonObject { ["prompt"] = "Q", ["completion"] = "A" }, new JsonObject { ["prompt"] = "Q", ["completion"] = "" })));
        Assert.Contains("empty.jsonl:2", empty.Message);
        Assert.Contains("completion", empty.Message);
    }
}
