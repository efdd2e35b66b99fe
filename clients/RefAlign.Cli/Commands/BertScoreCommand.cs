using System.CommandLine;
using RefAlign.Compute.BertScore;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary><c>refalign bertscore</c>: the <c>bert-score</c> command line over our encoders and scorer.</summary>
internal static class BertScoreCommand
{
    public static Command Create()
    {
        var model = CliSupport.ModelOption();
        model.Description = "HF encoder folder (BertModel, RobertaModel, BartModel) with its tokenizer files.";
        var cands = new Option<string>("--candidates", "-c") { Description = "File with one candidate per line.", Required = true };
        var refs = new Option<string[]>("--references", "-r")
        {
            Description = "File with one reference per line; repeat for several references per candidate.", Required = true,
        };
        var idf = new Option<bool>("--idf") { Description = "Weight tokens by idf over the references." };
        var layers = new Option<int?>("--layers") { Description = "Encoder layers to use (default: bert_score's choice for the model)." };
        var baseline = new Option<string?>("--baseline") { Description = "Rescale with this bert_score baseline file (LAYER,P,R,F)." };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 64 };
        var multi = new Option<string>("--multi-ref")
        {
            Description = "best-f: the best reference's P/R/F (default); elementwise: max of each, as the bert_score package.",
            DefaultValueFactory = _ => "best-f",
        };
        multi.AcceptOnlyFromAmong("best-f", "elementwise");
        var json = CliSupport.JsonOption();
        var device = CliSupport.DeviceOption();
        var cmd = new Command("bertscore", "BERTScore of candidates against references (mean P/R/F, or per pair with --json).")
        {
            model, cands, refs, idf, layers, baseline, batch, multi, device, json,
        };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            var target = CliSupport.Device(r.GetValue(device)!);
            var candidates = ReadLines(r.GetValue(cands)!);
            var refFiles = r.GetValue(refs)!;
            var refLines = refFiles.Select(ReadLines).ToList();
            for (var i = 0; i < refFiles.Length; i++)
                if (refLines[i].Count != candidates.Count)
                    throw new ArgumentException(
                        $"{refFiles[i]} has {refLines[i].Count} lines but {r.GetValue(cands)} has {candidates.Count}; each reference file needs one line per candidate.");
            using var scorer = BertScorer.FromPretrained(r.GetValue(model)!, r.GetValue(layers), device: target);
            var options = new BertScoreOptions
            {
                Idf = r.GetValue(idf), BatchSize = r.GetValue(batch),
                MultiReference = r.GetValue(multi) == "elementwise" ? MultiReferenceMode.Elementwise : MultiReferenceMode.BestF,
                Baseline = r.GetValue(baseline) is { } b ? BaselineRescale.Load(b, scorer.Layers) : null,
            };
            var references = Enumerable.Range(0, candidates.Count)
                .Select(i => (IReadOnlyList<string>)[.. refLines.Select(f => f[i])]).ToList();
            var started = DateTime.UtcNow;
            var scores = scorer.Score(candidates, references, options);
            var seconds = (DateTime.UtcNow - started).TotalSeconds;
            double mp = scores.Average(s => s.Precision), mr = scores.Average(s => s.Recall), mf = scores.Average(s => s.F1);
            if (r.GetValue(json))
            {
                CliSupport.WriteJson(new
                {
                    model = r.GetValue(model), layers = scorer.Layers, idf = options.Idf, rescaled = options.Baseline is not null,
                    precision = mp, recall = mr, f1 = mf, seconds,
                    pairs = scores.Select((s, i) => new { index = i, candidate = candidates[i], precision = s.Precision, recall = s.Recall, f1 = s.F1 }),
                });
                return 0;
            }
            AnsiConsole.MarkupLineInterpolated(
                $"{Path.GetFileName(Path.GetFullPath(r.GetValue(model)!))}_L{scorer.Layers}{(options.Idf ? "_idf" : "_no-idf")}{(options.Baseline is null ? "" : "_rescaled")} P: {mp:F6} R: {mr:F6} F1: {mf:F6}");
            return 0;
        }));
        return cmd;
    }

    static List<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: file not found.");
        try
        {
            var lines = File.ReadAllLines(path).ToList();
            // A trailing newline is not an extra (empty) sentence.
            if (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
            return lines;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{path}: cannot be read ({e.Message}).", e);
        }
    }
}
