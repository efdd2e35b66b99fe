using System.CommandLine;
using RefAlign.Client;
using RefAlign.Compute.Evaluation;
using RefAlign.Compute.Training;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign run eval ID --model base --model latest --out DIR</c>: evaluates a finished run's models through the
/// cluster (the silos generate and score, as in training) and writes the same <c>eval.json</c>, <c>samples.jsonl</c> and
/// <c>report.md</c> as <c>refalign eval</c>, here, from the samples the silo sends back.
/// </summary>
internal static class RunEvalCommand
{
    public static Command Create(Option<string> silo, Option<string?> apiKey)
    {
        var id = new Argument<string>("id") { Description = "The run id (stopped, completed or failed)." };
        var models = new Option<string[]>("--model")
        {
            Description = "base (the run's starting policy), latest (its latest checkpoint) or step-N; repeat to compare, the first is the baseline. Default: latest.",
        };
        var examples = new Option<int?>("--examples") { Description = "Held-out examples (default: the run's eval_examples)." };
        var numSamples = new Option<int?>("--num-samples") { Description = "Samples per prompt (default: the run's refalign.num_samples)." };
        var seed = new Option<long?>("--seed") { Description = "Keys the sampling streams; every model samples with the same keys (default 1)." };
        var threshold = new Option<double?>("--correct-threshold") { Description = "An answer is correct when its BERTScore F1 is at least this (default 0.9)." };
        var bootstrap = new Option<int?>("--bootstrap") { Description = "Bootstrap resamples for the 95 % intervals (default 1000)." };
        var output = new Option<string>("--out") { Description = "Folder for eval.json, samples.jsonl and report.md.", Required = true };
        var noStore = new Option<bool>("--no-store") { Description = "Do not keep the report on the cluster (by default it is stored as artifact reports/<run>, for `run pull --eval`)." };
        var json = CliSupport.JsonOption();
        var cmd = new Command("eval", "Evaluate a finished run's checkpoints (or its base policy) on its held-out data through the cluster; writes eval.json, samples.jsonl and report.md here.")
        {
            id, models, examples, numSamples, seed, threshold, bootstrap, output, noStore, json,
        };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var run = await client.GetRunAsync(r.GetValue(id)!, ct);
            var request = new RunEvalRequest(run.RunId, r.GetValue(models) ?? [], r.GetValue(examples), r.GetValue(numSamples),
                r.GetValue(seed), r.GetValue(threshold), r.GetValue(bootstrap));
            RunEvalResult? result = null;
            await EvalProgressView.RunAsync(r.GetValue(json), async progressOf =>
            {
                await foreach (var u in client.EvaluateRunAsync(request, ct))
                {
                    if (u.Total > 0) progressOf(u.ModelIndex, u.Models, u.Model).Report((u.Done, u.Total));
                    result = u.Result ?? result;
                }
            });
            if (result is null) throw new IOException($"the silo ended the evaluation of run {run.RunId} without a result; run it again.");
            var config = RunConfig.Parse(run.ConfigJson);
            var eval = new EvalConfig
            {
                RunConfig = $"run {run.RunId}", Models = [.. result.Models.Select(m => m.Path)], OutputDir = Path.GetFullPath(r.GetValue(output)!),
                Examples = request.Examples, NumSamples = request.NumSamples, Seed = request.Seed ?? 1,
                CorrectThreshold = request.CorrectThreshold ?? 0.9, Bootstrap = request.Bootstrap ?? 1000,
            };
            var results = result.Models.Select(m => new ModelEvaluation(m.Model, m.Path, m.Metrics,
                [.. m.Samples.Select(s => new EvalSample(m.Model, s.PromptId, s.Sample, s.Harmful, s.Answer, s.Confidence, s.F1, s.Correct, s.Reward, s.Length))],
                m.F1Low is { } low && m.F1High is { } high ? new Interval(low, high) : null, m.Notes)).ToList();
            var sideBySide = result.SideBySide.Select(s => new SideBySide(s.ModelA, s.ModelB, s.WinRate, new Interval(s.Low, s.High), s.Wins, s.Ties, s.Losses)).ToList();
            Directory.CreateDirectory(eval.OutputDir);
            var files = EvalReportWriter.Write(eval, config, results, sideBySide);
            EvalCommand.Report(r.GetValue(json), results, sideBySide, files);
            if (!r.GetValue(noStore))
            {
                // Kept on the cluster beside the run, so whoever pulls the run's results gets its evaluation too.
                var stored = await client.PushArtifactAsync(eval.OutputDir, RunPullCommand.ReportArtifact(run.RunId), "report", cancellation: ct);
                if (!r.GetValue(json)) Console.Error.WriteLine($"stored the report on the cluster as artifact {stored.Name} (refalign run pull {run.RunId} --eval --out DIR)");
            }
            return 0;
        }));
        return cmd;
    }
}
