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
    /// <summary>The GRPO family's KL reference: a frozen model of its own, or the policy with its adapters off (<see cref="_referenceScope"/>).</summary>
    readonly CausalLm? _reference;
    readonly Func<IDisposable?>? _referenceScope;

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
        if (config.IsGrpoFamily && config.PolicyGradient.KlCoef > 0)
        {
            // As for the preference losses: a separate reference_model wins, else LoRA's base is the reference, else the starting weights.
            if (Lora is { } lora && config.Policy.ReferenceModel is null) _referenceScope = lora.Disable;
            else
            {
                _reference = CausalLm.FromPretrained(config.Policy.ReferenceModel ?? config.Policy.Model, policy.DType, policy.Device);
                _reference.eval();
            }
        }
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

    /// <summary>
    /// One optimizer step of a sampling algorithm over the global batch <paramref name="rows"/>: RefAlign's
    /// −A·log π(y|x) (§3) or the GRPO family's clipped objective (§7), either one with a pipelined run's truncated
    /// importance weights (§8). Micro-batches are weighted by their share of the average (tokens, or sequences).
    /// </summary>
    public StepResult RefAlignStep(int step, IReadOnlyList<RolloutRow> rows)
    {
        if (Replay(step) is { } done) return done;
        var totalTokens = rows.Sum(r => r.Completion.Length);
        if (totalTokens == 0) throw new ArgumentException("the batch has no completion tokens.", nameof(rows));
        var clipped = _config.IsGrpoFamily;
        var corrects = _config.CorrectsOffPolicy;
        if (clipped || corrects)
            foreach (var r in rows)
                if (r.BehaviourLogProbs?.Length != r.Completion.Length)
                    throw new ArgumentException($"row of prompt {r.PromptId} sample {r.SampleIndex} carries {r.BehaviourLogProbs?.Length ?? 0} behaviour log-probs for {r.Completion.Length} completion tokens.", nameof(rows));
        var bySequence = clipped && _config.PolicyGradient.LossAveraging == LossAveraging.Sequence;
        var sums = new Dictionary<string, double>();
        void Add(string key, double value, double share) => sums[key] = sums.GetValueOrDefault(key) + value * share;
        Policy.train();
        foreach (var (start, count, rowShare) in MicroBatches.Split(rows.Count, _config.MicroBatchSize))
        {
            using var scope = NewDisposeScope();
            var mb = rows.Skip(start).Take(count).ToList();
            var batch = SequenceCollator.Collate([.. mb.Select(r => (r.Prompt, r.Completion))], _padId, PaddingSide.Right);
            var dev = Policy.Device;
            var ids = tensor(batch.InputIds, [batch.Rows, batch.Length], device: dev);
            var attention = tensor(batch.AttentionMask, [batch.Rows, batch.Length], device: dev);
            var logits = Policy.Forward(ids, attention).to(ScalarType.Float32);
            var lp = SequenceLogProbs.FromLogits(logits, ids, tensor(batch.CompletionMask, [batch.Rows, batch.Length], device: dev));
            var entropies = RefAlignPolicyGradientLoss.TokenEntropies(logits);
            var adv = tensor(mb.Select(r => (float)r.Advantage).ToArray(), device: dev);
            // Weight each micro-batch by its share of what the loss averages over, so the sum is the global average.
            var tokenShare = mb.Sum(r => r.Completion.Length) / (double)totalTokens;
            var share = bySequence ? rowShare : tokenShare;
            var behaviour = clipped || corrects ? AlignedBehaviour(mb, batch, dev) : null;
            Tensor? weights = null;
            if (corrects)
            {
                var (w, mean, clip) = TruncatedImportance.Compute(lp.PerToken, behaviour!, lp.CompletionMask, _config.Distributed.ImportanceCap);
                weights = w;
                Add(TruncatedImportance.WeightMean, mean, tokenShare);
                Add(TruncatedImportance.ClipFraction, clip, tokenShare);
            }
            Tensor loss;
            IReadOnlyDictionary<string, double> metrics;
            if (clipped)
            {
                var pg = _config.PolicyGradient;
                // Off-policy, the ratio is taken to the learner's own policy before the step (decoupled PPO) and the
                // weight carries the behaviour correction; on-policy, the ratio is to the behaviour log-probs.
                var old = corrects ? lp.PerToken.detach() : behaviour!;
                var reference = pg.KlCoef > 0 ? ReferencePerToken(ids, attention, lp.CompletionMask) : null;
                var result = ClippedPolicyLoss.Compute(lp.PerToken, lp.CompletionMask, adv, old,
                    new ClippedPolicyLossOptions { ClipEpsilon = pg.ClipEpsilon, KlCoef = pg.KlCoef, Averaging = pg.LossAveraging },
                    reference, weights, entropies);
                (loss, metrics) = (result.Loss, result.Metrics);
            }
            else
            {
                var result = RefAlignPolicyGradientLoss.Compute(lp.PerToken, lp.CompletionMask, adv, entropies, weights);
                (loss, metrics) = (result.Loss, result.Metrics);
            }
            (loss * share).backward();
            Add(RefAlignPolicyGradientLoss.Loss, metrics[RefAlignPolicyGradientLoss.Loss], share);
            foreach (var key in new[] { RefAlignPolicyGradientLoss.Entropy, ClippedPolicyLoss.ClipFraction, ClippedPolicyLoss.RatioMean, ClippedPolicyLoss.Kl })
                if (metrics.TryGetValue(key, out var v)) Add(key, v, tokenShare);
        }
        var adv2 = rows.Select(r => r.Advantage).ToList();
        var mean2 = adv2.Average();
        sums[RefAlignPolicyGradientLoss.Entropy] = sums.GetValueOrDefault(RefAlignPolicyGradientLoss.Entropy);
        sums[RefAlignPolicyGradientLoss.AdvantageMean] = mean2;
        sums[RefAlignPolicyGradientLoss.AdvantageStd] = Math.Sqrt(adv2.Average(a => (a - mean2) * (a - mean2)));
        sums[RefAlignPolicyGradientLoss.AdvantageMin] = adv2.Min();
        sums[RefAlignPolicyGradientLoss.AdvantageMax] = adv2.Max();
        sums[RefAlignPolicyGradientLoss.ResponseLengthMean] = rows.Average(r => r.Completion.Length);
        return Commit(step, sums);
    }

    /// <summary>The rows' behaviour log-probs [B, T] in the collated (right-padded) layout: completion token j of row b at its prompt length + j.</summary>
    static Tensor AlignedBehaviour(IReadOnlyList<RolloutRow> rows, CollatedBatch batch, Device device)
    {
        var values = new float[batch.Rows * batch.Length];
        for (var b = 0; b < rows.Count; b++)
        {
            var offset = b * batch.Length + rows[b].Prompt.Length;
            Array.Copy(rows[b].BehaviourLogProbs!, 0, values, offset, rows[b].Completion.Length);
        }
        return tensor(values, [batch.Rows, batch.Length], device: device);
    }

    /// <summary>The frozen reference's per-token log-probs of the same batch (no graph), for the KL term.</summary>
    Tensor ReferencePerToken(Tensor ids, Tensor attention, Tensor completionMask)
    {
        using var _ = no_grad();
        using var off = _referenceScope?.Invoke();
        var model = _reference ?? Policy;
        using var eval = PolicySetup.EvalMode(model);
        var logits = model.Forward(ids, attention).to(ScalarType.Float32);
        return SequenceLogProbs.FromLogits(logits, ids, completionMask).PerToken.detach();
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
        _reference?.Dispose();
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
