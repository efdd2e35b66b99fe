using RefAlign.Compute.Losses;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Compute.Training.ReferenceCache;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// The papers' recipes on real-shaped data: truncation as the reference DPO code does it, Sr-*'s prompted query that
/// never loses p, no dropout in passes without a gradient, one reference-loading path, and the paper's "marginal".
/// </summary>
[Collection(nameof(DefaultGeneratorCollection))]
public sealed class RecipeFidelityTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-fidelity-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Model(string name = "policy", int seed = 1)
    {
        var dir = Path.Combine(_root, name);
        if (!Directory.Exists(dir)) ModelPresets.Initialize(dir, "tiny", "llama", seed: seed);
        return dir;
    }

    string Preferences()
    {
        var dir = Path.Combine(_root, "data");
        if (!Directory.Exists(dir)) DemoData.WriteTo(dir);
        return Path.Combine(dir, DemoData.PreferencesFileName);
    }

    RunConfig SrDpo(string output, PolicySection? policy = null, int maxLength = 64, int maxPromptLength = 32, string? data = null) => new RunConfig
    {
        Name = "fidelity", Algorithm = Algorithm.SrDpo, Seed = 3, OutputDir = Path.Combine(_root, output),
        Policy = policy ?? new PolicySection { Model = Model() },
        Data = new DataSection { Path = data ?? Preferences(), MaxLength = maxLength, MaxPromptLength = maxPromptLength, EvalFraction = 0.1, Shuffle = false },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 0 },
        BatchSize = 4, MicroBatchSize = 4, MaxSteps = 2, EvalEvery = 0, CheckpointEvery = 0,
    }.Validate();

    [Fact]
    public void Truncation_follows_the_reference_dpo_code_and_keeps_the_bos()
    {
        const int bos = 1;
        int[] prompt = [bos, .. Enumerable.Range(10, 20)];
        int[] chosen = [.. Enumerable.Range(100, 10)], rejected = [.. Enumerable.Range(200, 5)];

        // Too long: the prompt keeps its end (the turn being answered) behind its BOS, then the completions get the
        // fixed budget max_length − max_prompt_length.
        var (p, c, r) = TrainingData.Truncate(prompt, chosen, rejected, maxLength: 16, maxPromptLength: 8, bos);
        Assert.Equal([bos, 23, 24, 25, 26, 27, 28, 29], p);
        Assert.Equal([.. Enumerable.Range(100, 8)], c);
        Assert.Equal(rejected, r);

        // A short prompt is kept whole; the completions still get max_length − max_prompt_length, not the room left.
        var (p2, c2, _) = TrainingData.Truncate([bos, 5, 6], [.. Enumerable.Range(100, 20)], [7], maxLength: 16, maxPromptLength: 8, bos);
        Assert.Equal([bos, 5, 6], p2);
        Assert.Equal(8, c2.Length);

        // A tokenizer that adds no BOS: plain left cut. A pair that fits is untouched.
        Assert.Equal([.. Enumerable.Range(22, 8)], TrainingData.Truncate([.. Enumerable.Range(10, 20)], chosen, rejected, 16, 8).Prompt);
        var fits = TrainingData.Truncate([bos, 2, 3], [4, 5], [6], 16, 8, bos);
        Assert.Equal([bos, 2, 3], fits.Prompt);
        Assert.Equal([4, 5], fits.Chosen);
        Assert.Equal([6], fits.Rejected);
    }

    [Fact]
    public void The_prompted_query_keeps_p_whole_and_conditions_on_the_plain_query_tail()
    {
        var file = Path.Combine(_root, "long.jsonl");
        var longPrompt = string.Join(' ', Enumerable.Range(0, 60).Select(i => $"word{i} of a long conversation")) + " so what is the answer";
        File.WriteAllLines(file,
        [
            $$"""{"prompt": "{{longPrompt}}", "chosen": "it is forty two", "rejected": "no idea at all"}""",
            """{"prompt": "what is two plus two", "chosen": "four", "rejected": "five"}""",
            """{"prompt": "name a colour", "chosen": "blue", "rejected": "seven"}""",
        ]);
        var cfg = SrDpo("prompted", new PolicySection { Model = Model(), ChatTemplate = ChatTemplate.Zephyr }, maxLength: 48, maxPromptLength: 16, data: file);
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        var pairs = data.TrainPairs.Concat(data.EvalPairs).OrderBy(p => p.Id).ToList();
        int? bos = tok.AddBosToken ? tok.BosId : null;
        var zephyr = ChatFormat.BuiltInZephyr;
        var head = tok.Encode(zephyr.Header + SelfRefinementPrompt.Default + " ").ToArray();

        // The long prompt was cut to 16 tokens; the prompted query is p whole, then exactly those tokens' query tail.
        var cut = pairs[0];
        Assert.Equal(16, cut.Prompt.Length);
        var prompted = cut.PromptedPrompt!;
        Assert.Equal(head, prompted[..head.Length]);
        var tail = bos is int b && cut.Prompt[0] == b ? cut.Prompt[1..] : cut.Prompt;
        Assert.Equal(tail, prompted[head.Length..]);
        Assert.Contains(SelfRefinementPrompt.Default, tok.Decode(prompted));
        // The kept tail is the end of the templated prompt: the turn being answered and the assistant header.
        Assert.EndsWith(tok.Decode(tail, skipSpecialTokens: false), zephyr.Prompt(longPrompt));
        Assert.EndsWith("</s>\n<|assistant|>\n", tok.Decode(tail, skipSpecialTokens: false));
        if (bos is int first) Assert.Equal(first, cut.Prompt[0]);

        // Uncut prompts: the prompted query is the paper's text p ⊕ x, templated, as one string.
        var whole = pairs[1];
        Assert.Equal(tok.Encode(zephyr.Prompt("what is two plus two")), whole.Prompt);
        Assert.Equal(tok.Encode(zephyr.Prompt(SelfRefinementPrompt.Apply("what is two plus two"))), whole.PromptedPrompt);
    }

    [Fact]
    public void Lora_dropout_is_off_in_the_prompted_pass()
    {
        var cfg = SrDpo("dropout", new PolicySection { Model = Model(), Lora = new LoraSection { Rank = 4, Alpha = 8, Dropout = 0.5 } });
        // Two learners from the same seed take the same first step; before the second, one draws extra random numbers,
        // so every dropout mask after that differs. The prompted pass (refine/delta) must not notice; the trained pass does.
        Dictionary<string, double> SecondStep(bool shiftRng)
        {
            var tok = TextTokenizer.Load(cfg.Policy.Model);
            var data = TrainingData.Load(cfg, tok);
            using var services = new LocalTrainingServices(cfg with { OutputDir = Path.Combine(cfg.OutputDir, shiftRng.ToString()) }, tok, data);
            var pairs = data.TrainPairs.Take(4).ToList();
            var refs = services.ReferenceAsync(pairs, prompted: true, CancellationToken.None).GetAwaiter().GetResult();
            var rows = pairs.Zip(refs, (p, r) => new PreferenceRow(p, r)).ToList();
            services.Learner.PreferenceStep(0, rows);
            if (shiftRng) rand(1000).Dispose();
            return new(services.Learner.PreferenceStep(1, rows).Metrics);
        }
        var a = SecondStep(false);
        var b = SecondStep(true);
        Assert.NotEqual(a["loss"], b["loss"]); // dropout is live in the trained pass: the test is not vacuous
        Assert.Equal(a[PreferenceMetrics.RefineDelta], b[PreferenceMetrics.RefineDelta]);
        Assert.Equal(a[PreferenceMetrics.PromptedAccuracies], b[PreferenceMetrics.PromptedAccuracies]);
    }

    [Fact]
    public async Task With_lora_a_configured_reference_model_is_the_reference()
    {
        var referenceDir = Model("reference", seed: 5);
        var cfg = SrDpo("lora-ref", new PolicySection { Model = Model(), ReferenceModel = referenceDir, Lora = new LoraSection { Rank = 4, Alpha = 8 } });
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        var data = TrainingData.Load(cfg, tok);
        using var services = new LocalTrainingServices(cfg, tok, data);
        var pairs = data.TrainPairs.Take(4).ToList();
        var got = await services.ReferenceAsync(pairs, prompted: true, CancellationToken.None);

        using var reference = CausalLm.FromPretrained(referenceDir);
        var pad = PolicySetup.SpecialIds(tok, reference).Pad;
        var expected = new ReferenceScorer(reference, new ReferenceLogProbCache(Path.Combine(_root, "expected-cache")), pad).Score(pairs, prompted: true);
        Assert.Equal(expected, got);
        Assert.Equal([ReferenceLogProbCache.HashWeights(reference) + ".jsonl"],
            Directory.GetFiles(Path.Combine(cfg.OutputDir, "reference_cache")).Select(Path.GetFileName));
    }

    [Fact]
    public void Preference_metrics_report_the_papers_marginal_beside_trls_beta_scaled_margins()
    {
        const double beta = 0.1;
        var lp = new PreferenceLogProbs(tensor(new[] { -1f, -2f }), tensor(new[] { -3f, -1f }), tensor(new[] { -1.5f, -2f }), tensor(new[] { -2f, -2f }));
        using var result = PreferenceLoss.Create(new PreferenceLossOptions { Kind = Algorithm.Dpo, Beta = beta }).Compute(lp, null);
        // h = (π+ − ref+) − (π− − ref−): pair 0: 0.5 − (−1) = 1.5; pair 1: 0 − 1 = −1 → mean 0.25.
        Assert.Equal(0.25, result.Metrics[PreferenceMetrics.Marginal], 6);
        Assert.Equal(beta * 0.25, result.Metrics[PreferenceMetrics.RewardsMargins], 6);
    }
}
