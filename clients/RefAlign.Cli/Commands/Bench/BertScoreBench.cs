using System.CommandLine;
using RefAlign.Presets;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Tokenization;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// <c>refalign bench bertscore</c>: scored pairs per second, and the scorer's time over a bare encoder forward on the
/// same token batches (the scoring overhead: tokenizing, normalising, matching).
/// </summary>
internal static class BertScoreBench
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { DefaultValueFactory = _ => "small-roberta" };
        preset.AcceptOnlyFromAmong([.. EncoderPresets.Names]);
        var pairs = new Option<int>("--pairs") { DefaultValueFactory = _ => 512 };
        var runs = new Option<int>("--runs") { DefaultValueFactory = _ => 7 };
        var json = CliSupport.JsonOption();
        var cmd = new Command("bertscore", "BERTScore pairs/s and overhead over a bare encoder forward.") { preset, pairs, runs, json };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            BenchSupport.UseDevice(r);
            var res = Run(r.GetValue(preset)!, r.GetValue(pairs), r.GetValue(runs), r.GetValue(json));
            BenchSupport.Emit(r, "bertscore", res, r.GetValue(json), () => BenchSupport.Print("BERTScore", [
                ("preset / layers / threads", $"{res.Preset} / {res.Layers} / {res.Threads}"),
                ("pairs (distinct sentences)", $"{res.Pairs} ({res.Sentences})"),
                ("scorer", $"{res.ScoreSeconds:F3} s, {res.PairsPerSecond:F1} pairs/s"),
                ("bare encoder forward, same batches", $"{res.ForwardSeconds:F3} s"),
                ("scoring overhead (goal ≤ 10 %)", $"{res.OverheadPercent:F1} %"),
            ]));
            return 0;
        }));
        return cmd;
    }

    internal sealed record Result(string Preset, int Layers, int Threads, int Pairs, int Sentences, double ScoreSeconds,
        double PairsPerSecond, double ForwardSeconds, double OverheadPercent)
    {
        /// <summary>The figures scripts compare against their goals, under the names every bench uses.</summary>
        public IReadOnlyDictionary<string, double> Ratios => new Dictionary<string, double> { ["scoring_overhead"] = OverheadPercent / 100 };
    }

    static Result Run(string preset, int pairCount, int runs, bool quiet)
    {
        var dir = Directory.CreateTempSubdirectory("refalign-bench-bs-").FullName;
        try
        {
            BenchSupport.Step(quiet, $"writing {preset}", () => EncoderPresets.Initialize(dir, preset, seed: 0));
            using var scorer = BertScorer.FromPretrained(dir);
            using var encoder = TransformerEncoder.FromPretrained(dir);
            var tok = EncoderTokenizer.Load(dir);
            var refs = DemoData.References;
            var prefs = DemoData.Preferences;
            var cands = Enumerable.Range(0, pairCount).Select(i => prefs[i % prefs.Count].Chosen + (i >= prefs.Count ? $" ({i / prefs.Count})" : "")).ToList();
            var references = Enumerable.Range(0, pairCount).Select(i => refs[i % refs.Count].Reference).ToList();
            // The same work minus scoring: embed the same distinct sentences in the same sorted batches.
            var ids = cands.Concat(references).Distinct().Select(tok.EncodeForScoring).OrderByDescending(x => x.Length).ToList();
            // Bare forward and scorer alternate, and the overhead is the median of per-pair ratios, so drift cancels.
            double[] seconds = [], ratios = [];
            BenchSupport.Step(quiet, "scoring vs bare forward", () => (seconds, ratios) = BenchSupport.Interleaved(runs,
                () => Forward(encoder, ids, tok.PadId, scorer.Layers), () => scorer.Score(cands, references)));
            var (forward, score) = (seconds[0], seconds[1]);
            var overhead = ratios[1] - 1;
            return new Result(preset, scorer.Layers, get_num_threads(), pairCount, ids.Count, score, pairCount / score, forward,
                100 * overhead);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    static void Forward(TransformerEncoder encoder, List<int[]> sorted, int pad, int layers, int batchSize = 64)
    {
        using var _ = no_grad();
        for (var start = 0; start < sorted.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = sorted.Skip(start).Take(batchSize).ToList();
            var len = batch[0].Length;
            var input = new long[batch.Count * len];
            var mask = new long[input.Length];
            Array.Fill(input, pad);
            for (var b = 0; b < batch.Count; b++)
                for (var t = 0; t < batch[b].Length; t++) { input[b * len + t] = batch[b][t]; mask[b * len + t] = 1; }
            encoder.HiddenStates(tensor(input, [batch.Count, len]), tensor(mask, [batch.Count, len]), layers);
        }
    }
}
