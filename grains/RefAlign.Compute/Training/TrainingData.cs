using RefAlign.Compute.Data;
using RefAlign.Compute.Losses;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Compute.Training;

/// <summary>One preference pair as token ids: prompt, chosen and rejected completions (each ending with EOS),
/// and for Sr-* the prompted query p ⊕ x.</summary>
public sealed record PreferencePair(int Id, int[] Prompt, int[] Chosen, int[] Rejected, int[]? PromptedPrompt);

/// <summary>One RefAlign prompt with its reference answer.</summary>
public sealed record ReferencePrompt(int Id, int[] Prompt, string PromptText, string Reference, bool Harmful);

/// <summary>
/// The run's data: loaded in the configured layout, split into train/eval with the run seed, tokenized and truncated
/// as docs/algorithms.md §1 says. Batches are a pure function of (seed, step), so resuming needs only the step number.
/// </summary>
public sealed class TrainingData
{
    public IReadOnlyList<PreferencePair> TrainPairs { get; private init; } = [];
    public IReadOnlyList<PreferencePair> EvalPairs { get; private init; } = [];
    public IReadOnlyList<ReferencePrompt> TrainPrompts { get; private init; } = [];
    public IReadOnlyList<ReferencePrompt> EvalPrompts { get; private init; } = [];
    public int Skipped { get; private init; }
    public IReadOnlyList<string> SkippedReasons { get; private init; } = [];

    public int TrainCount => TrainPairs.Count + TrainPrompts.Count;

    public static TrainingData Load(RunConfig config, TextTokenizer tokenizer)
    {
        var d = config.Data;
        var opts = new DataLoadOptions { SkipMalformed = d.SkipMalformed, PkuPreference = d.PkuPreference, Limit = d.Limit };
        var eos = tokenizer.EosIds.Count > 0 ? tokenizer.EosIds[0]
            : throw new ModelFormatException($"{config.Policy.Model}: the tokenizer defines no EOS token.");
        var template = config.Policy.ChatTemplate;
        int[] EncodePrompt(string text, int max)
        {
            var ids = tokenizer.Encode(ChatTemplates.Apply(template, text)).ToArray();
            return ids.Length > max ? ids[^max..] : ids;
        }
        int[] EncodeCompletion(string text) => [.. tokenizer.Encode(text, addSpecialTokens: false), eos];

        if (config.IsPreference)
        {
            var res = PreferenceDataset.Load(d.Path, ParsePreferenceLayout(d.Layout), opts);
            if (res.Examples.Count < 2) throw new InvalidRunConfigException("data.path", $"{d.Path}: needs at least 2 usable pairs, found {res.Examples.Count}.");
            var refinement = config.Preference.RefinementPrompt ?? SelfRefinementPrompt.Default;
            var refinementTokens = config.IsSelfRefined ? tokenizer.Encode(refinement, addSpecialTokens: false).Count : 0;
            var pairs = res.Examples.Select((e, i) =>
            {
                var (prompt, chosen, rejected) = Truncate(EncodePrompt(e.Prompt, int.MaxValue), EncodeCompletion(e.Chosen),
                    EncodeCompletion(e.Rejected), d.MaxLength, d.MaxPromptLength);
                // The prompted query gets room for the refinement text on top of the prompt budget, so truncation
                // never cuts the instruction that defines Δ.
                var prompted = config.IsSelfRefined
                    ? EncodePrompt(SelfRefinementPrompt.Apply(refinement, e.Prompt), d.MaxPromptLength + refinementTokens + 1)
                    : null;
                return new PreferencePair(i, prompt, chosen, rejected, prompted);
            }).ToList();
            var (train, eval) = Split(pairs, config);
            return new TrainingData { TrainPairs = train, EvalPairs = eval, Skipped = res.Skipped, SkippedReasons = res.SkippedReasons };
        }
        else
        {
            var res = ReferenceDataset.Load(d.Path, ParseReferenceLayout(d.Layout), opts);
            if (res.Examples.Count < 2) throw new InvalidRunConfigException("data.path", $"{d.Path}: needs at least 2 usable prompts, found {res.Examples.Count}.");
            // In confidence mode references may carry the same "### Confidence: x" tail as responses (CONQORD data);
            // answers are scored without it on both sides.
            var prompts = res.Examples.Select((e, i) => new ReferencePrompt(i, EncodePrompt(e.Prompt, d.MaxPromptLength), e.Prompt,
                config.RefAlign.Confidence ? ConfidenceParser.Parse(e.Reference).Answer : e.Reference, e.Harmful)).ToList();
            var (train, eval) = Split(prompts, config);
            return new TrainingData { TrainPrompts = train, EvalPrompts = eval, Skipped = res.Skipped, SkippedReasons = res.SkippedReasons };
        }
    }

    /// <summary>DPO-repo truncation for a pair: by the longer completion, prompt from the left, then both completions.</summary>
    public static (int[] Prompt, int[] Chosen, int[] Rejected) Truncate(int[] prompt, int[] chosen, int[] rejected, int maxLength, int maxPromptLength)
    {
        var longer = Math.Max(chosen.Length, rejected.Length);
        if (prompt.Length + longer > maxLength && prompt.Length > maxPromptLength) prompt = prompt[^maxPromptLength..];
        var room = maxLength - prompt.Length;
        return (prompt, chosen.Length > room ? chosen[..room] : chosen, rejected.Length > room ? rejected[..room] : rejected);
    }

    static (IReadOnlyList<T> Train, IReadOnlyList<T> Eval) Split<T>(IReadOnlyList<T> items, RunConfig c)
    {
        var (train, eval) = c.Data.Shuffle
            ? DatasetSplit.TrainEvalSplit(items, c.Data.EvalFraction, c.Seed)
            : (items.Take(items.Count - DatasetSplit.EvalCount(items.Count, c.Data.EvalFraction)).ToList(),
               items.Skip(items.Count - DatasetSplit.EvalCount(items.Count, c.Data.EvalFraction)).ToList());
        return (train, eval.Take(c.EvalExamples).ToList());
    }

    /// <summary>Optimizer steps per epoch: full batches only (at least one; a batch larger than the data wraps around).</summary>
    public int StepsPerEpoch(int batchSize) => Math.Max(1, TrainCount / batchSize);

    public int TotalSteps(RunConfig c) => c.MaxSteps ?? c.Epochs * StepsPerEpoch(c.BatchSize);

    /// <summary>Indices into the train list for global step <paramref name="step"/>: epoch-wise seeded permutations.</summary>
    public IReadOnlyList<int> BatchIndices(int step, int batchSize, long seed, bool shuffle)
    {
        var perEpoch = StepsPerEpoch(batchSize);
        var epoch = step / perEpoch;
        var within = step % perEpoch;
        var order = Enumerable.Range(0, TrainCount).ToList();
        var perm = shuffle ? DatasetSplit.Shuffle(order, unchecked((long)SplitMix64.Mix(seed, epoch, 0x0DA7A))) : order;
        return [.. Enumerable.Range(within * batchSize, batchSize).Select(i => perm[i % perm.Count])];
    }

    // The validator has already refused layouts that do not fit the algorithm's data (e.g. conqord for a preference run).
    static PreferenceLayout ParsePreferenceLayout(DataLayout l) => l switch
    {
        DataLayout.Plain => PreferenceLayout.Plain,
        DataLayout.HhRlhf => PreferenceLayout.HhRlhf,
        DataLayout.UltraFeedback => PreferenceLayout.UltraFeedback,
        DataLayout.PkuSafeRlhf => PreferenceLayout.PkuSafeRlhf,
        _ => PreferenceLayout.Auto,
    };

    static ReferenceLayout ParseReferenceLayout(DataLayout l) => l switch
    {
        DataLayout.Plain => ReferenceLayout.Plain,
        DataLayout.Conqord => ReferenceLayout.Conqord,
        DataLayout.PkuSafeRlhf => ReferenceLayout.PkuSafeRlhf,
        _ => ReferenceLayout.Auto,
    };
}
