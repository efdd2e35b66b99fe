using RefAlign.Compute.Data;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Compute.Training;

/// <summary>Tokens a truncation removed from one part of an example, and their text.</summary>
public sealed record RemovedTokens(int Tokens, string Text);

/// <summary>What truncation removed: the prompt's front (behind its BOS), the completions' ends.</summary>
public sealed record TruncationReport(RemovedTokens Prompt, RemovedTokens? Chosen, RemovedTokens? Rejected);

/// <summary>
/// One example exactly as the model sees it (<c>refalign data inspect</c>): each part as text (special tokens shown)
/// and token ids, after the run's template and truncation, with what truncation removed.
/// </summary>
public sealed record ExampleView(
    int Index, string Source, string Split,
    string PromptText, int[] PromptIds,
    string? PromptedText, int[]? PromptedIds,
    string? ChosenText, int[]? ChosenIds,
    string? RejectedText, int[]? RejectedIds,
    string? ReferenceText, bool? Harmful,
    TruncationReport Truncated);

/// <summary>Builds <see cref="ExampleView"/>s from the same <see cref="TrainingData"/> a run trains on.</summary>
public static class ExampleInspection
{
    /// <summary>
    /// The example at <paramref name="index"/> (0-based, among the file's usable examples) of <paramref name="config"/>'s
    /// data. Throws <see cref="ArgumentException"/> naming the range when there is no such example.
    /// </summary>
    public static ExampleView Inspect(RunConfig config, TextTokenizer tokenizer, int index)
    {
        var d = config.Data;
        // Every held-out example, so one beyond eval_examples can be looked at too.
        var data = TrainingData.Load(config with { EvalExamples = int.MaxValue }, tokenizer);
        var opts = TrainingData.LoadOptions(d);
        string Text(IEnumerable<int> ids) => tokenizer.Decode(ids, skipSpecialTokens: false);
        var format = ChatTemplates.Resolve(config.Policy.ChatTemplate, tokenizer);
        int[] FullPrompt(string prompt) => TrainingData.TemplatedPrompt(tokenizer, format, prompt);
        int? bos = tokenizer.AddBosToken ? tokenizer.BosId : null;
        RemovedTokens PromptCut(int[] full, int[] kept)
        {
            var front = bos is int b && full.Length > 0 && full[0] == b && kept.Length > 0 && kept[0] == b ? 1 : 0;
            var removed = full[front..(full.Length - (kept.Length - front))];
            return new RemovedTokens(removed.Length, Text(removed));
        }

        RemovedTokens CompletionCut(string text, int[] kept)
        {
            int[] full = [.. tokenizer.Encode(text, addSpecialTokens: false), tokenizer.EosIds[0]];
            return new RemovedTokens(full.Length - kept.Length, Text(full[kept.Length..]));
        }

        if (config.IsSft)
        {
            // The completion shows where a preference pair's chosen answer does: it is what the model learns to write.
            var e = Pick(SftDataset.Load(d.Path, d.Layout, opts).Examples, index, d.Path);
            var (seq, split) = Find(data.TrainSequences, data.EvalSequences, s => s.Id, index, config.EvalExamples);
            return new ExampleView(index, e.Source, split, Text(seq.Prompt), seq.Prompt, null, null, Text(seq.Completion), seq.Completion, null, null,
                null, null, new TruncationReport(PromptCut(FullPrompt(e.Prompt), seq.Prompt), CompletionCut(e.Completion, seq.Completion), null));
        }
        if (config.IsPreference)
        {
            var examples = PreferenceDataset.Load(d.Path, TrainingData.ParsePreferenceLayout(d.Layout), opts).Examples;
            var e = Pick(examples, index, d.Path);
            var (pair, split) = Find(data.TrainPairs, data.EvalPairs, p => p.Id, index, config.EvalExamples);
            return new ExampleView(index, e.Source, split, Text(pair.Prompt), pair.Prompt,
                pair.PromptedPrompt is { } pp ? Text(pp) : null, pair.PromptedPrompt,
                Text(pair.Chosen), pair.Chosen, Text(pair.Rejected), pair.Rejected, null, null,
                new TruncationReport(PromptCut(FullPrompt(e.Prompt), pair.Prompt), CompletionCut(e.Chosen, pair.Chosen), CompletionCut(e.Rejected, pair.Rejected)));
        }
        else
        {
            var examples = ReferenceDataset.Load(d.Path, TrainingData.ParseReferenceLayout(d.Layout), opts).Examples;
            var e = Pick(examples, index, d.Path);
            var (prompt, split) = Find(data.TrainPrompts, data.EvalPrompts, p => p.Id, index, config.EvalExamples);
            return new ExampleView(index, e.Source, split, Text(prompt.Prompt), prompt.Prompt, null, null, null, null, null, null,
                prompt.Reference, prompt.Harmful, new TruncationReport(PromptCut(FullPrompt(e.Prompt), prompt.Prompt), null, null));
        }
    }

    static T Pick<T>(IReadOnlyList<T> examples, int index, string path) =>
        index >= 0 && index < examples.Count ? examples[index]
            : throw new ArgumentException($"--index {index}: {path} has {examples.Count} usable examples (0 to {examples.Count - 1}).");

    static (T Item, string Split) Find<T>(IReadOnlyList<T> train, IReadOnlyList<T> eval, Func<T, int> id, int index, int evalExamples)
    {
        if (train.FirstOrDefault(t => id(t) == index) is { } x) return (x, "train");
        var at = eval.Select(id).ToList().IndexOf(index);
        return at >= 0 ? (eval[at], at < evalExamples ? "eval" : "held out (beyond eval_examples)")
            : throw new InvalidOperationException($"example {index} is in neither split.");
    }
}
