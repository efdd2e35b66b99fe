using System.CommandLine;
using RefAlign.Compute;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Presets;
using RefAlign.Compute.Models;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.ReferenceCache;
using RefAlign.Compute.Scoring;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// <c>refalign bench learner</c>: the time of a Sr-DPO step over a DPO step on the same batch with the reference cache
/// warm (the paper reports 1.24), an SFT step on the same tokens (each pair's two sequences as SFT examples), and the DPO
/// learner step's achieved FLOP/s over the measured matmul FLOP/s (timed in the same rounds), with the step split into its parts.
/// </summary>
internal static class LearnerBench
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { DefaultValueFactory = _ => "small" };
        preset.AcceptOnlyFromAmong([.. ModelPresets.Names]);
        var pairs = new Option<int>("--pairs") { DefaultValueFactory = _ => 8 };
        var promptTokens = new Option<int>("--prompt-tokens") { DefaultValueFactory = _ => 96 };
        var completionTokens = new Option<int>("--completion-tokens") { DefaultValueFactory = _ => 96 };
        var runs = new Option<int>("--runs")
        {
            Description = "Rounds of one step each of DPO, Sr-DPO (prefix shared, then run twice) and SFT, taken in turn after a warm-up round; each ratio is the median over rounds.",
            DefaultValueFactory = _ => 5,
        };
        var clusterSteps = new Option<int>("--cluster-steps")
        {
            Description = "Steps per run of the two-silo part (Sr-DPO with its prompted pass offloaded; 0 skips it).", DefaultValueFactory = _ => 6,
        };
        var json = CliSupport.JsonOption();
        var cmd = new Command("learner", "Sr-DPO vs DPO vs SFT step time on the same tokens (reference cache warm) and learner FLOP efficiency.")
        {
            preset, pairs, promptTokens, completionTokens, runs, clusterSteps, json,
        };
        cmd.SetAction(async (r, ct) => await CliSupport.RunAsync(async () =>
        {
            BenchSupport.UseDevice(r);
            var res = Run(r.GetValue(preset)!, r.GetValue(pairs), r.GetValue(promptTokens), r.GetValue(completionTokens), r.GetValue(runs), r.GetValue(json));
            if (r.GetValue(clusterSteps) > 0)
                res = res with
                {
                    Offload = await OffloadBench.RunAsync(r.GetValue(preset)!, r.GetValue(pairs), r.GetValue(promptTokens), r.GetValue(completionTokens),
                        r.GetValue(clusterSteps), r.GetValue(json), ct),
                };
            BenchSupport.Emit(r, "learner", res, r.GetValue(json), () => BenchSupport.Print("Learner", [
                ("preset / threads", $"{res.Preset} / {res.Threads}"),
                ("batch", $"{res.Pairs} pairs, prompt {res.PromptTokens} (+{res.RefinementTokens} refinement) + completion {res.CompletionTokens} tokens"),
                ("DPO step", $"{res.DpoSeconds:F3} s"),
                ("Sr-DPO step", $"{res.SrDpoSeconds:F3} s"),
                ("Sr-DPO ÷ DPO (paper 1.24; goal ≤ 1.30 on one silo)", $"{res.SrDpoOverDpo:F3}"),
                ("  the same, prompted prefix run twice", $"{res.SrDpoUnsharedOverDpo:F3}"),
                ("SFT step (same tokens)", $"{res.SftSeconds:F3} s"),
                ("SFT ÷ DPO", $"{res.SftOverDpo:F3}"),
                ("matmul peak", $"{res.MatmulGflops:F1} GFLOP/s"),
                ("DPO step achieved", $"{res.DpoGflops:F1} GFLOP/s"),
                ("learner FLOP/s ÷ matmul FLOP/s", $"{res.LearnerToMatmul:F2}"),
                ("  forward + backward alone (same tokens), FLOP/s ÷ matmul FLOP/s", $"{res.Profile.ForwardBackwardSeconds:F3} s, {res.Profile.ForwardBackwardToMatmul:F2}"),
                ("  AdamW step alone (same parameters)", $"{res.Profile.OptimizerSeconds:F3} s"),
                ("where the DPO step's time goes", res.Profile.Finding),
                .. res.Offload is not { } o ? [] : (IEnumerable<(string, string)>)[
                    ("two silos: DPO step (grains, median)", $"{o.DpoStep:F3} s (learn {o.DpoLearn:F3} s)"),
                    ("two silos: Sr-DPO step, prompted pass offloaded", $"{o.SrDpoOffloadedStep:F3} s (learn {o.SrDpoOffloadedLearn:F3} s; replica values used in {o.OffloadedShare:P0} of steps)"),
                    ("two silos: Sr-DPO step, prompted pass on the learner", $"{o.SrDpoLearnerStep:F3} s (learn {o.SrDpoLearnerLearn:F3} s)"),
                    ("Sr-DPO offloaded ÷ DPO (goal ≤ 1.10)", $"{o.OffloadedOverDpo:F3}"),
                    ("Sr-DPO on the learner ÷ DPO, same silos", $"{o.LearnerOverDpo:F3}"),
                ],
            ]));
            return 0;
        }));
        return cmd;
    }

    internal sealed record Result(string Preset, int Threads, int Pairs, int PromptTokens, int RefinementTokens, int CompletionTokens,
        double DpoSeconds, double SrDpoSeconds, double SrDpoOverDpo, double SrDpoUnsharedOverDpo, double SftSeconds, double SftOverDpo, double MatmulGflops, double DpoGflops,
        double LearnerToMatmul, LearnerBench.StepProfile Profile)
    {
        /// <summary>The two-silo part (null when skipped).</summary>
        public OffloadBench.Result? Offload { get; init; }

        /// <summary>The figures scripts compare against their goals, under the names every bench uses.</summary>
        public IReadOnlyDictionary<string, double> Ratios => new Dictionary<string, double>
        {
            ["srdpo_over_dpo"] = SrDpoOverDpo, ["srdpo_unshared_prefix_over_dpo"] = SrDpoUnsharedOverDpo, ["sft_over_dpo"] = SftOverDpo, ["learner_flops_ratio"] = LearnerToMatmul,
            ["learner_forward_backward_flops_ratio"] = Profile.ForwardBackwardToMatmul,
        }.Concat(Offload is not { } o ? [] : new Dictionary<string, double>
        {
            ["srdpo_over_dpo_offloaded"] = o.OffloadedOverDpo, ["srdpo_over_dpo_two_silos_learner"] = o.LearnerOverDpo,
        }).ToDictionary();
    }

    static Result Run(string preset, int pairCount, int promptTokens, int completionTokens, int runs, bool quiet)
    {
        var shape = ModelPresets.Shape(preset) with { Architecture = "LlamaForCausalLM", BosTokenId = 1, EosTokenIds = [2] };
        const int refinementTokens = 48; // the paper's instruction is ~48 tokens with a Llama tokenizer
        int[] Tokens(int n, int salt) => [.. Enumerable.Range(0, n).Select(i => 3 + (i * 13 + salt * 7) % (shape.VocabSize - 3))];
        var pairs = Enumerable.Range(0, pairCount).Select(i => new PreferencePair(i, Tokens(promptTokens, i), Tokens(completionTokens, i + 100),
            Tokens(completionTokens, i + 200), [.. Tokens(refinementTokens, 999), .. Tokens(promptTokens, i)])).ToList();

        // Every learner lives at once, so their steps can alternate (BenchSupport.Interleaved).
        var owned = new List<IDisposable>();
        T Own<T>(T d) where T : IDisposable
        {
            owned.Add(d);
            return d;
        }
        CausalLm Model()
        {
            var m = Own(new CausalLm(shape));
            m.InitializeWeights(0);
            return m;
        }

        Action PreferenceSteps(Algorithm algorithm, bool sharePrefix = true)
        {
            var cfg = new RunConfig
            {
                Algorithm = algorithm, BatchSize = pairCount, MicroBatchSize = pairCount,
                Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-5, WarmupSteps = 0 },
            };
            var policy = Model();
            var scorer = new ReferenceScorer(Model(), new ReferenceLogProbCache(), padId: 0);
            var prompted = cfg.IsSelfRefined;
            scorer.Score(pairs, prompted); // warm the cache: steps below only look values up
            var learner = Own(new Learner(cfg, policy, padId: 0, totalSteps: 100) { SharePromptedPrefix = sharePrefix });
            var step = 0;
            return () =>
            {
                var refs = scorer.Score(pairs, prompted);
                learner.PreferenceStep(step++, [.. pairs.Select((p, i) => new PreferenceRow(p, refs[i]))]);
            };
        }

        // SFT on the same tokens: each pair's prompt ⊕ chosen and prompt ⊕ rejected as two examples.
        Action SftSteps()
        {
            var cfg = new RunConfig
            {
                Algorithm = Algorithm.Sft, BatchSize = 2 * pairCount, MicroBatchSize = 2 * pairCount,
                Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-5, WarmupSteps = 0 },
            };
            var learner = Own(new Learner(cfg, Model(), padId: 0, totalSteps: 100));
            List<SftSequence> rows = [.. pairs.SelectMany(p => new[] { new SftSequence(2 * p.Id, p.Prompt, p.Chosen), new SftSequence(2 * p.Id + 1, p.Prompt, p.Rejected) })];
            var step = 0;
            return () => learner.SftStep(step++, rows);
        }

        // The DPO step's parts on their own: the policy's log-probs of the same sequences with their backward (what the FLOP
        // count counts), and AdamW over the same parameters; what is left is the loss, clipping and the reference lookups.
        var seq = promptTokens + completionTokens;
        Action ForwardBackward()
        {
            var policy = Model();
            var batch = SequenceCollator.ConcatenatedPreference([.. pairs.Select(p => p.Prompt)], [.. pairs.Select(p => p.Chosen)], [.. pairs.Select(p => p.Rejected)], 0);
            return () =>
            {
                using (var values = SequenceLogProbs.Compute(policy, batch)) values.Sum.sum().backward();
                policy.zero_grad();
            };
        }
        Action OptimizerSteps()
        {
            var policy = Model();
            using (var scope = NewDisposeScope()) policy.Forward(Own(ones(1, seq, dtype: ScalarType.Int64))).sum().backward();
            var adamw = Own(TorchSharp.torch.optim.AdamW(policy.parameters(), 1e-5));
            return () => adamw.step();
        }

        double[] seconds = [], ratios = [];
        double peakFlopsPerRun = 0;
        try
        {
            // The matmul peak is timed in the same rounds as the steps: the host's speed drifts, and a ratio of two
            // timings taken minutes apart carries that drift.
            var peak = Own(BenchSupport.MatmulPeak.Best(shape, 2 * pairCount * seq));
            peakFlopsPerRun = peak.FlopsPerRun;
            BenchSupport.Step(quiet, "DPO, Sr-DPO (prompted prefix shared and run twice), SFT, forward + backward, AdamW and matmul peak, in turn", () => (seconds, ratios) = BenchSupport.Interleaved(runs,
                PreferenceSteps(Algorithm.Dpo), PreferenceSteps(Algorithm.SrDpo), PreferenceSteps(Algorithm.SrDpo, sharePrefix: false), SftSteps(),
                ForwardBackward(), OptimizerSteps(), peak.Run));
        }
        finally
        {
            owned.ForEach(d => d.Dispose());
        }
        var dpoFlops = 3 * (BenchSupport.ForwardFlopsPerToken(shape) * 2 * pairCount * seq + BenchSupport.AttentionFlops(shape, 2 * pairCount, seq));
        var dpo = seconds[0];
        var matmul = peakFlopsPerRun / seconds[6];
        // Per round: (DPO FLOPs ÷ DPO time) ÷ (peak FLOPs ÷ peak time), the median over rounds.
        var learnerToMatmul = dpoFlops / peakFlopsPerRun * ratios[6];
        return new Result(preset, get_num_threads(), pairCount, promptTokens, refinementTokens, completionTokens, dpo, seconds[1], ratios[1], ratios[2], seconds[3], ratios[3],
            matmul / 1e9, dpoFlops / dpo / 1e9, learnerToMatmul, new StepProfile(dpo, seconds[4], seconds[5], dpoFlops / matmul));
    }

    /// <summary>
    /// A DPO step against its parts measured alone in the same rounds: forward + backward over the same sequences and an
    /// AdamW step over the same parameters; <paramref name="MatmulSeconds"/> is the step's FLOPs at the matmul peak.
    /// </summary>
    internal sealed record StepProfile(double StepSeconds, double ForwardBackwardSeconds, double OptimizerSeconds, double MatmulSeconds)
    {
        public double ForwardBackwardToMatmul => ForwardBackwardSeconds > 0 ? MatmulSeconds / ForwardBackwardSeconds : 0;

        /// <summary>The step's time split into its FLOPs at the matmul peak, the rest of forward + backward, AdamW and the remainder.</summary>
        public string Finding
        {
            get
            {
                if (StepSeconds <= 0) return "";
                string Part(string what, double seconds) => $"{what} {Math.Max(0, seconds):F3} s ({Math.Max(0, seconds) / StepSeconds:P0})";
                return $"of the DPO step's {StepSeconds:F3} s: " + string.Join(", ",
                    Part("its FLOPs at the matmul peak", MatmulSeconds),
                    Part("the rest of forward + backward (norms, softmax, rotary, element-wise ops)", ForwardBackwardSeconds - MatmulSeconds),
                    Part("AdamW", OptimizerSeconds),
                    Part("loss, clipping and reference lookups", StepSeconds - ForwardBackwardSeconds - OptimizerSeconds));
            }
        }
    }
}
