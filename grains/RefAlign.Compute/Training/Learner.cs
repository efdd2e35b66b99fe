using RefAlign.Compute.Losses;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Scoring;
using RefAlign.Compute.Training.Optimization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training;

/// <summary>
/// The only writer of policy weights: applies RefAlign or preference-loss steps with micro-batch accumulation,
/// clipping and the optimizer, bumps the weight version once per step, and saves/restores its exact state.
/// Steps are idempotent by number: re-sending a step already applied returns its recorded result.
/// </summary>
public sealed partial class Learner : IDisposable
{
    readonly RunConfig _config;
    readonly PolicyOptimizer _optimizer;
    const int AppliedResultsKept = 64;
    readonly Dictionary<int, StepResult> _applied = [];
    readonly int _padId;

    public CausalLm Policy { get; }
    public LoraAdapters? Lora { get; }
    public long WeightVersion { get; private set; }

    /// <summary>Optimizer steps applied so far (the next step to apply).</summary>
    public int Step => _optimizer.Step;

    /// <summary>The tensors the optimizer updates (the LoRA adapters, or every policy weight) under their names.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> TrainableParameters() =>
        PolicySetup.Trainable(Policy, Lora).Select(p => (p.Name, (Tensor)p.Parameter));

    public Learner(RunConfig config, CausalLm policy, int padId, int totalSteps)
    {
        _config = config;
        _padId = padId;
        Policy = policy;
        Lora = PolicySetup.AttachLora(policy, config);
        var o = config.Optimizer;
        _optimizer = new PolicyOptimizer(PolicySetup.Trainable(policy, Lora), new OptimizerOptions
        {
            Kind = o.Kind,
            LearningRate = o.LearningRate, WeightDecay = o.WeightDecay, WarmupSteps = o.WarmupSteps,
            Schedule = o.Schedule,
            TotalSteps = Math.Max(totalSteps, o.WarmupSteps + 1), MaxGradNorm = o.MaxGradNorm,
        });
        policy.train();
    }

    PreferenceLossOptions LossOptions => new()
    {
        Kind = _config.Algorithm,
        Beta = _config.Preference.Beta,
        LabelSmoothing = _config.Preference.LabelSmoothing,
        Lambda = _config.Preference.Lambda,
        RefinementPrompt = _config.Preference.RefinementPrompt ?? SelfRefinementPrompt.Default,
    };

    bool SumReduction => _config.Preference.LogpReduction == LogProbReduction.Sum;

    /// <summary>No-grad passes run each shared prompt once for both completions (on by default; benches and tests compare both).</summary>
    public bool SharePromptedPrefix { get; set; } = true;

    /// <summary>One optimizer step of DPO/cDPO/IPO/Sr-DPO/Sr-IPO over the global batch <paramref name="rows"/>.</summary>
    public StepResult PreferenceStep(int step, IReadOnlyList<PreferenceRow> rows) => FinishPreferenceStep(BeginPreferenceStep(step, rows), null);

    /// <summary>
    /// The first half of a preference step whose Sr-* prompted log-probs a replica may supply: the first micro-batch's
    /// plain pass, with its graph kept for <see cref="FinishPreferenceStep"/>. Between the two halves the caller waits
    /// for the replica without holding a compute thread; the loss is the same whoever computed the prompted values.
    /// A step applied already comes back done (<see cref="PendingPreferenceStep.Done"/>).
    /// </summary>
    public PendingPreferenceStep BeginPreferenceStep(int step, IReadOnlyList<PreferenceRow> rows)
    {
        if (Replay(step) is { } done) return new PendingPreferenceStep(step, rows, done, null);
        Policy.train();
        var (start, count, _) = MicroBatches.Split(rows.Count, _config.MicroBatchSize).First();
        using var scope = NewDisposeScope();
        var plain = PolicyAndReference([.. rows.Skip(start).Take(count)], prompted: false, withGrad: true);
        // Kept past this scope (and this thread): the second half computes the loss on them and disposes them.
        foreach (var t in new[] { plain.PolicyChosen, plain.PolicyRejected, plain.ReferenceChosen, plain.ReferenceRejected }) t.DetachFromDisposeScope();
        return new PendingPreferenceStep(step, rows, null, plain);
    }

    /// <summary>
    /// The rest of the step begun by <paramref name="pending"/>. For Sr-*, <paramref name="offloaded"/> holds the prompted
    /// policy log-probs (one per row, computed by a replica at this weight version); null computes them here.
    /// </summary>
    public StepResult FinishPreferenceStep(PendingPreferenceStep pending, IReadOnlyList<PromptedPolicyLogProbs>? offloaded)
    {
        if (pending.Done is { } done) return done;
        var rows = pending.Rows;
        var first = pending.TakeFirstPlain();
        var loss = PreferenceLoss.Create(LossOptions);
        var given = offloaded is { } g && g.Count == rows.Count ? g : null;
        var sums = new Dictionary<string, double>();
        Policy.train();
        try
        {
            foreach (var (start, count, scale) in MicroBatches.Split(rows.Count, _config.MicroBatchSize))
            {
                using var scope = NewDisposeScope();
                var mb = rows.Skip(start).Take(count).ToList();
                var plain = start == 0 ? first : PolicyAndReference(mb, prompted: false, withGrad: true);
                PreferenceLogProbs? prompted = null;
                if (loss.Options.NeedsPrompted)
                    prompted = given is null ? PolicyAndReference(mb, prompted: true, withGrad: false) : Offloaded(mb, given, start);
                using var result = loss.Compute(plain, prompted);
                (result.Loss * scale).backward();
                foreach (var (k, v) in result.Metrics) sums[k] = sums.GetValueOrDefault(k) + v * scale;
            }
        }
        finally
        {
            foreach (var t in new[] { first.PolicyChosen, first.PolicyRejected, first.ReferenceChosen, first.ReferenceRejected }) t.Dispose();
        }
        // Whether a replica's values were used (1) or the learner computed them after all (0); only when some were offered.
        if (pending.Offered) sums[OffloadedMetric] = given is null ? 0 : 1;
        return Commit(pending.Step, sums);
    }

    /// <summary>Reported by a Sr-* step that was offered the prompted log-probs: 1 when it used them.</summary>
    public const string OffloadedMetric = "refine/offloaded";

    /// <summary>Per-pair policy log-probs (with or without a graph) next to the matching reference values.</summary>
    PreferenceLogProbs PolicyAndReference(List<PreferenceRow> mb, bool prompted, bool withGrad)
    {
        var prompts = mb.Select(r => prompted ? r.Pair.PromptedPrompt! : r.Pair.Prompt).ToList();
        List<int[]> chosen = [.. mb.Select(r => r.Pair.Chosen)], rejected = [.. mb.Select(r => r.Pair.Rejected)];
        var reduction = SumReduction ? LogProbReduction.Sum : LogProbReduction.Mean;
        var values = withGrad
            ? SequenceLogProbs.Compute(Policy, SequenceCollator.ConcatenatedPreference(prompts, chosen, rejected, _padId)).Reduced(reduction)
            : PromptedPass.NoGradValues(Policy, prompts, chosen, rejected, reduction, _padId, SharePromptedPrefix);
        var n = mb.Count;
        var (refChosen, refRejected) = ReferenceValues(mb, prompted);
        return new PreferenceLogProbs(values.narrow(0, 0, n), values.narrow(0, n, n), refChosen, refRejected);
    }

    /// <summary>The prompted log-probs a replica computed for rows start.. of the step, as the loss takes them.</summary>
    PreferenceLogProbs Offloaded(List<PreferenceRow> mb, IReadOnlyList<PromptedPolicyLogProbs> given, int start)
    {
        var part = given.Skip(start).Take(mb.Count).ToList();
        var (refChosen, refRejected) = ReferenceValues(mb, prompted: true);
        return new PreferenceLogProbs(tensor(part.Select(v => (float)v.Chosen).ToArray(), device: Policy.Device),
            tensor(part.Select(v => (float)v.Rejected).ToArray(), device: Policy.Device), refChosen, refRejected);
    }

    (Tensor Chosen, Tensor Rejected) ReferenceValues(List<PreferenceRow> mb, bool prompted)
    {
        double Pick(ReferenceLogProbs r, bool chosen) => (prompted, chosen, SumReduction) switch
        {
            (false, true, true) => r.ChosenSum, (false, true, false) => r.ChosenMean,
            (false, false, true) => r.RejectedSum, (false, false, false) => r.RejectedMean,
            (true, true, true) => r.PromptedChosenSum, (true, true, false) => r.PromptedChosenMean,
            (true, false, true) => r.PromptedRejectedSum, _ => r.PromptedRejectedMean,
        };
        return (tensor(mb.Select(r => (float)Pick(r.Reference, true)).ToArray(), device: Policy.Device),
            tensor(mb.Select(r => (float)Pick(r.Reference, false)).ToArray(), device: Policy.Device));
    }

    /// <summary>One RefAlign optimizer step: −A·log π(y|x) as a token-level masked mean over the whole batch.</summary>
    public StepResult RefAlignStep(int step, IReadOnlyList<RolloutRow> rows)
    {
        if (Replay(step) is { } done) return done;
        var totalTokens = rows.Sum(r => r.Completion.Length);
        if (totalTokens == 0) throw new ArgumentException("the batch has no completion tokens.", nameof(rows));
        double loss = 0, entropy = 0;
        Policy.train();
        foreach (var (start, count, _) in MicroBatches.Split(rows.Count, _config.MicroBatchSize))
        {
            using var scope = NewDisposeScope();
            var mb = rows.Skip(start).Take(count).ToList();
            var batch = SequenceCollator.Collate([.. mb.Select(r => (r.Prompt, r.Completion))], _padId, PaddingSide.Right);
            var dev = Policy.Device;
            var ids = tensor(batch.InputIds, [batch.Rows, batch.Length], device: dev);
            var logits = Policy.Forward(ids, tensor(batch.AttentionMask, [batch.Rows, batch.Length], device: dev)).to(ScalarType.Float32);
            var lp = SequenceLogProbs.FromLogits(logits, ids, tensor(batch.CompletionMask, [batch.Rows, batch.Length], device: dev));
            var entropies = RefAlignPolicyGradientLoss.TokenEntropies(logits);
            var adv = tensor(mb.Select(r => (float)r.Advantage).ToArray(), device: dev);
            using var pg = RefAlignPolicyGradientLoss.Compute(lp.PerToken, lp.CompletionMask, adv, entropies);
            // Weight each micro-batch by its share of completion tokens so the sum is the global token mean.
            var share = mb.Sum(r => r.Completion.Length) / (double)totalTokens;
            (pg.Loss * share).backward();
            loss += pg.Metrics[RefAlignPolicyGradientLoss.Loss] * share;
            entropy += pg.Metrics.GetValueOrDefault(RefAlignPolicyGradientLoss.Entropy) * share;
        }
        var adv2 = rows.Select(r => r.Advantage).ToList();
        var mean = adv2.Average();
        return Commit(step, new Dictionary<string, double>
        {
            [RefAlignPolicyGradientLoss.Loss] = loss,
            [RefAlignPolicyGradientLoss.Entropy] = entropy,
            [RefAlignPolicyGradientLoss.AdvantageMean] = mean,
            [RefAlignPolicyGradientLoss.AdvantageStd] = Math.Sqrt(adv2.Average(a => (a - mean) * (a - mean))),
            [RefAlignPolicyGradientLoss.AdvantageMin] = adv2.Min(),
            [RefAlignPolicyGradientLoss.AdvantageMax] = adv2.Max(),
            [RefAlignPolicyGradientLoss.ResponseLengthMean] = rows.Average(r => r.Completion.Length),
        });
    }

    /// <summary>Results of the most recent applied steps, oldest first (what a caller that lost a reply can still report).</summary>
    public IReadOnlyList<StepResult> RecentlyApplied => [.. _applied.Values.OrderBy(r => r.Step)];

    StepResult? Replay(int step)
    {
        if (_applied.TryGetValue(step, out var done)) return done;
        if (step != Step)
            throw new InvalidOperationException($"learner is at step {Step}; step {step} arrived out of order.");
        return null;
    }

    StepResult Commit(int step, Dictionary<string, double> metrics)
    {
        // A non-finite term of the loss poisons every gradient: nothing of this step may reach the weights.
        // (Perplexity is exp(loss), which can overflow while the loss itself is fine.)
        foreach (var (term, value) in metrics)
        {
            if (double.IsFinite(value) || term.EndsWith(SftPerplexity, StringComparison.Ordinal)) continue;
            _optimizer.DropGradients();
            throw new NonFiniteStepException(step, term, value, "the gradients were dropped and nothing was applied");
        }
        metrics["learning_rate"] = _optimizer.LearningRateAt(_optimizer.Step);
        metrics["grad_norm"] = _optimizer.ClipAndStep();
        WeightVersion++;
        var result = new StepResult(step, WeightVersion, metrics);
        _applied[step] = result;
        // A retried call concerns recent steps only (a run grain that failed over re-sends at most the step in flight).
        _applied.Remove(step - AppliedResultsKept);
        return result;
    }

    public void Dispose()
    {
        _optimizer.Dispose();
        Lora?.Dispose();
    }
}

/// <summary>
/// A preference step between its two halves (<see cref="Learner.BeginPreferenceStep"/>): the first micro-batch's plain
/// log-probs with their graph, or the recorded result of a step applied already.
/// </summary>
public sealed class PendingPreferenceStep(int step, IReadOnlyList<PreferenceRow> rows, StepResult? done, PreferenceLogProbs? firstPlain)
{
    PreferenceLogProbs? _firstPlain = firstPlain;

    public int Step => step;

    public IReadOnlyList<PreferenceRow> Rows => rows;

    public StepResult? Done => done;

    /// <summary>A replica's values were asked for: the step reports whether it used them.</summary>
    public bool Offered { get; set; }

    /// <summary>The first plain pass, once: a step is finished at most once.</summary>
    internal PreferenceLogProbs TakeFirstPlain()
    {
        var plain = _firstPlain ?? throw new InvalidOperationException($"step {step} was finished already.");
        _firstPlain = null;
        return plain;
    }
}
