using RefAlign.Compute.Data;
using RefAlign.Compute.Losses;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Compute.Training;

/// <summary>One preference pair as token ids: prompt, chosen and rejected completions (each ending with EOS),
/// and for Sr-* the prompted query p ⊕ x.</summary>
public sealed record PreferencePair(int Id, int[] Prompt, int[] Chosen, int[] Rejected, int[]? PromptedPrompt);

/// <summary>One SFT example as token ids: the prompt (masked out of the loss) and the completion, ending with EOS.</summary>
public sealed record SftSequence(int Id, int[] Prompt, int[] Completion);

/// <summary>One prompt of a sampling run with its reference answer and, for rule rewards, its verifiable answer.</summary>
public sealed record ReferencePrompt(int Id, int[] Prompt, string PromptText, string Reference, bool Harmful, string? Answer = null);

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
    public IReadOnlyList<SftSequence> TrainSequences { get; private init; } = [];
    public IReadOnlyList<SftSequence> EvalSequences { get; private init; } = [];
    public int Skipped { get; private init; }
    public IReadOnlyList<string> SkippedReasons { get; private init; } = [];

    public int TrainCount => TrainPairs.Count + TrainPrompts.Count + TrainSequences.Count;

    public static TrainingData Load(RunConfig config, TextTokenizer tokenizer)
    {
        var d = config.Data;
        var opts = LoadOptions(d);
        var eos = tokenizer.EosIds.Count > 0 ? tokenizer.EosIds[0]
            : throw new ModelFormatException($"{config.Policy.Model}: the tokenizer defines no EOS token.");
        var template = ChatTemplates.Resolve(config.Policy.ChatTemplate, tokenizer);
        var bos = tokenizer.AddBosToken ? tokenizer.BosId : null;
        int[] EncodePrompt(string text) => TemplatedPrompt(tokenizer, template, text);
        int[] EncodeCompletion(string text) => [.. tokenizer.Encode(text, addSpecialTokens: false), eos];

        if (config.IsSft)
        {
            var res = SftDataset.Load(d.Path, d.Layout, opts);
            if (res.Examples.Count < 2) throw new InvalidRunConfigException("data.path", $"{d.Path}: needs at least 2 usable examples, found {res.Examples.Count}.");
            // Truncated as the DPO reference code truncates its SFT batches: the prompt keeps its end, the completion its start.
            var sequences = res.Examples.Select((e, i) =>
            {
                var (prompt, completion, _) = Truncate(EncodePrompt(e.Prompt), EncodeCompletion(e.Completion), [], d.MaxLength, d.MaxPromptLength, bos);
                return new SftSequence(i, prompt, completion);
            }).ToList();
            var (train, eval) = Split(sequences, config);
            return new TrainingData { TrainSequences = train, EvalSequences = eval, Skipped = res.Skipped, SkippedReasons = res.SkippedReasons };
        }
        if (config.IsPreference)
        {
            var res = PreferenceDataset.Load(d.Path, ParsePreferenceLayout(d.Layout), opts);
            if (res.Examples.Count < 2) throw new InvalidRunConfigException("data.path", $"{d.Path}: needs at least 2 usable pairs, found {res.Examples.Count}.");
            var refinement = config.Preference.RefinementPrompt ?? SelfRefinementPrompt.Default;
            // The prompted query's head when the plain prompt was cut: BOS, the turn's header, then p and the space of p ⊕ x.
            var promptedHead = config.IsSelfRefined
                ? WithoutEos(ChatTemplates.Encode(tokenizer, template.Header + SelfRefinementPrompt.Apply(refinement, "")), tokenizer) : null;
            var pairs = res.Examples.Select((e, i) =>
            {
                var full = EncodePrompt(e.Prompt);
                var (prompt, chosen, rejected) = Truncate(full, EncodeCompletion(e.Chosen), EncodeCompletion(e.Rejected), d.MaxLength, d.MaxPromptLength, bos);
                // Uncut, the prompted query is the paper's text p ⊕ x, templated; cut, p ⊕ the plain pass's kept tail.
                var prompted = promptedHead is null ? null
                    : prompt.Length == full.Length ? EncodePrompt(SelfRefinementPrompt.Apply(refinement, e.Prompt))
                    : Prompted(promptedHead, prompt, bos);
                return new PreferencePair(i, prompt, chosen, rejected, prompted);
            }).ToList();
            var (train, eval) = Split(pairs, config);
            return new TrainingData { TrainPairs = train, EvalPairs = eval, Skipped = res.Skipped, SkippedReasons = res.SkippedReasons };
        }
        else
        {
            var res = ReferenceDataset.Load(d.Path, ParseReferenceLayout(d.Layout), opts);
            if (res.Examples.Count < 2) throw new InvalidRunConfigException("data.path", $"{d.Path}: needs at least 2 usable prompts, found {res.Examples.Count}.");
            RequireAnswers(config, res.Examples);
            // In confidence mode references may carry the same "### Confidence: x" tail as responses (CONQORD data);
            // answers are scored without it on both sides.
            var prompts = res.Examples.Select((e, i) => new ReferencePrompt(i, KeepEnd(EncodePrompt(e.Prompt), d.MaxPromptLength, bos), e.Prompt,
                config.RefAlign.Confidence ? ConfidenceParser.Parse(e.Reference).Answer : e.Reference, e.Harmful, e.Answer)).ToList();
            var (train, eval) = Split(prompts, config);
            return new TrainingData { TrainPrompts = train, EvalPrompts = eval, Skipped = res.Skipped, SkippedReasons = res.SkippedReasons };
        }
    }

    /// <summary>
    /// A run with a rule reward needs every example's verifiable answer: the first example without one is refused,
    /// naming its line, the field and the reward (at start, before anything loads).
    /// </summary>
    internal static void RequireAnswers(RunConfig config, IReadOnlyList<ReferenceExample> examples)
    {
        var rule = config.RefAlign.EffectiveRewards.Select((r, i) => (r, i)).FirstOrDefault(x => x.r.Kind == RewardKind.Rule);
        if (rule.r is null) return;
        if (examples.FirstOrDefault(e => e.Answer is null) is { } missing)
            throw new InvalidRunConfigException("data.path",
                $"{missing.Source}: field 'answer' is missing; refalign.rewards[{rule.i}] (rule) checks responses against it (plain layout: {{\"prompt\", \"answer\"}}).");
    }

    /// <summary>How the run's data file is read (also what <see cref="ExampleInspection"/> reads it with).</summary>
    internal static DataLoadOptions LoadOptions(DataSection d) =>
        new() { SkipMalformed = d.SkipMalformed, PkuPreference = d.PkuPreference, Limit = d.Limit };

    /// <summary>A prompt as the model sees it before truncation: templated, with the tokenizer's special tokens.</summary>
    internal static int[] TemplatedPrompt(TextTokenizer tokenizer, ChatFormat format, string text) =>
        [.. ChatTemplates.Encode(tokenizer, format.Prompt(text))];

    /// <summary>
    /// The reference DPO code's truncation (docs/algorithms.md §1): when the prompt and the longer completion (EOS
    /// included) exceed <paramref name="maxLength"/>, the prompt keeps its last <paramref name="maxPromptLength"/>
    /// tokens (a leading <paramref name="bos"/> stays first); when they still exceed it, each completion keeps its first
    /// <c>maxLength − maxPromptLength</c> tokens.
    /// </summary>
    public static (int[] Prompt, int[] Chosen, int[] Rejected) Truncate(int[] prompt, int[] chosen, int[] rejected, int maxLength, int maxPromptLength, int? bos = null)
    {
        var longer = Math.Max(chosen.Length, rejected.Length);
        if (prompt.Length + longer > maxLength) prompt = KeepEnd(prompt, maxPromptLength, bos);
        if (prompt.Length + longer <= maxLength) return (prompt, chosen, rejected);
        var room = maxLength - maxPromptLength;
        return (prompt, chosen.Length > room ? chosen[..room] : chosen, rejected.Length > room ? rejected[..room] : rejected);
    }

    /// <summary>The last <paramref name="max"/> tokens of <paramref name="ids"/>; a leading <paramref name="bos"/> is kept in front of them.</summary>
    public static int[] KeepEnd(int[] ids, int max, int? bos = null)
    {
        if (ids.Length <= max) return ids;
        return bos is int b && ids.Length > 0 && ids[0] == b && max > 1 ? [b, .. ids[^(max - 1)..]] : ids[^max..];
    }

    /// <summary>
    /// Sr-*'s prompted query for a cut prompt: <paramref name="promptedHead"/> (BOS, the turn's header, p and a space),
    /// then exactly the tokens the plain pass kept, without their BOS. So p is never cut, and h and h_p condition on the
    /// same query tail.
    /// </summary>
    public static int[] Prompted(int[] promptedHead, int[] plainPrompt, int? bos) =>
        bos is int b && plainPrompt.Length > 0 && plainPrompt[0] == b ? [.. promptedHead, .. plainPrompt[1..]] : [.. promptedHead, .. plainPrompt];

    static int[] WithoutEos(IReadOnlyList<int> ids, TextTokenizer tokenizer) =>
        tokenizer.AddEosToken && ids.Count > 0 && tokenizer.EosIds.Contains(ids[^1]) ? [.. ids.Take(ids.Count - 1)] : [.. ids];

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
    internal static PreferenceLayout ParsePreferenceLayout(DataLayout l) => l switch
    {
        DataLayout.Plain => PreferenceLayout.Plain,
        DataLayout.HhRlhf => PreferenceLayout.HhRlhf,
        DataLayout.UltraFeedback => PreferenceLayout.UltraFeedback,
        DataLayout.PkuSafeRlhf => PreferenceLayout.PkuSafeRlhf,
        _ => PreferenceLayout.Auto,
    };

    internal static ReferenceLayout ParseReferenceLayout(DataLayout l) => l switch
    {
        DataLayout.Plain => ReferenceLayout.Plain,
        DataLayout.Conqord => ReferenceLayout.Conqord,
        DataLayout.PkuSafeRlhf => ReferenceLayout.PkuSafeRlhf,
        _ => ReferenceLayout.Auto,
    };
}
