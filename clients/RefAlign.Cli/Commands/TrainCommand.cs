using System.CommandLine;
using RefAlign.Compute;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign train</c>: a whole RefAlign or DPO-family run in this process, with a progress bar, periodic eval,
/// checkpoints, <c>metrics.jsonl</c> and <c>--resume</c>. Ctrl-C stops after the current step and checkpoints it.
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Run config (JSON; see README).", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue from the latest checkpoint in output_dir." };
        var precompute = new Option<bool>("--precompute-reference") { Description = "Fill the reference log-prob cache for the whole data set first." };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Override max_steps." };
        var outputDir = new Option<string?>("--output-dir") { Description = "Override output_dir." };
        var json = CliSupport.JsonOption();
        var device = CliSupport.DeviceOption();
        var cmd = new Command("train", "Train a policy with RefAlign, DPO, cDPO, IPO, Sr-DPO, Sr-IPO or SFT in this process.")
        {
            config, resume, precompute, maxSteps, outputDir, device, json,
        };
        cmd.SetAction(async (r, ct) => await RunAsync(r.GetValue(config)!, r.GetValue(resume), r.GetValue(precompute),
            r.GetValue(maxSteps), r.GetValue(outputDir), r.GetValue(device)!, r.GetValue(json), ct));
        return cmd;
    }

    static async Task<int> RunAsync(string configPath, bool resume, bool precompute, int? maxSteps, string? outputDir, string device, bool json,
        CancellationToken cancellation)
    {
        RunConfig cfg;
        TorchSharp.torch.Device target;
        try
        {
            target = CliSupport.Device(device);
            cfg = RunConfig.LoadLocal(configPath);
            cfg = cfg with { MaxSteps = maxSteps ?? cfg.MaxSteps, OutputDir = outputDir ?? cfg.OutputDir };
            cfg.Validate();
            if (cfg.Distributed.Mode == DistributedMode.Pipelined)
                throw new InvalidRunConfigException("distributed.mode", "field 'distributed.mode' pipelined needs a cluster run; refalign train is strictly on-policy (sync).");
        }
        catch (Exception e) when (e is InvalidRunConfigException or DeviceUnavailableException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        return await CliSupport.RunAsync(async () =>
        {
            var checkpoints = Path.Combine(cfg.OutputDir, "checkpoints");
            if (!resume && Directory.Exists(checkpoints) && Directory.EnumerateDirectories(checkpoints, "step-*").Any())
                throw new ArgumentException($"{cfg.OutputDir} already holds checkpoints; pass --resume to continue it or choose another output_dir.");
            // The learner's memory, from config.json alone, before anything is allocated (the estimate a silo admits runs by).
            var policy = CausalLmConfig.Load(cfg.Policy.Model);
            ModelFootprint.RequireWithin(ModelFootprint.LearnerBytes(cfg, policy), ModelFootprint.HostMemoryBytes,
                $"{cfg.Policy.Model}: the run's learner (weights, gradients, optimizer state, one micro-batch) needs",
                $"{ModelFootprint.Sizes(policy)}, micro_batch_size {cfg.MicroBatchSize}, data.max_length {cfg.Data.MaxLength}", "this machine's memory");
            Directory.CreateDirectory(cfg.OutputDir);
            File.WriteAllText(Path.Combine(cfg.OutputDir, "run_config.json"), cfg.ToJson());
            var tokenizer = TextTokenizer.Load(cfg.Policy.Model);
            var data = TrainingData.Load(cfg, tokenizer);
            // stderr in --json mode too (stdout stays one JSON document); the summary also carries the count.
            if (data.Skipped > 0)
                Console.Error.WriteLine($"skipped {data.Skipped} lines of {cfg.Data.Path} (first: {data.SkippedReasons.FirstOrDefault()})");
            using var services = new LocalTrainingServices(cfg, tokenizer, data, target);
            if (precompute && cfg.IsPreference)
                CliSupport.Status(json, $"precomputing reference log-probs for {data.TrainPairs.Count + data.EvalPairs.Count} pairs",
                    () => services.PrecomputeReference(data));
            using var log = new JsonlRunLog(Path.Combine(cfg.OutputDir, "metrics.jsonl"));
            using var tensorboard = new RefAlign.Compute.Telemetry.TensorBoardLog(cfg.OutputDir);
            var progress = new TrainProgress(cfg, json);
            var run = new TrainingRun(cfg.Name, cfg, data, services, new Fanout(log, tensorboard, progress));
            int done;
            try
            {
                done = await progress.RunAsync(run.TotalSteps, () => run.RunAsync(cancellation));
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine($"stopped; the finished steps are checkpointed. Continue with: refalign train --config {configPath} --resume");
                return 130;
            }
            var summary = progress.Summary(done, run.TotalSteps, services.ReferenceCache?.ModelPasses, data.Skipped);
            if (json) CliSupport.WriteJson(summary);
            else progress.PrintSummary(summary);
            return 0;
        });
    }

    /// <summary>Forwards loop events to several observers.</summary>
    sealed class Fanout(params IRunObserver[] observers) : IRunObserver
    {
        public void OnStep(StepReport report) { foreach (var o in observers) o.OnStep(report); }
        public void OnEval(int step, IReadOnlyDictionary<string, double> metrics) { foreach (var o in observers) o.OnEval(step, metrics); }
        public void OnCheckpoint(int step, string folder) { foreach (var o in observers) o.OnCheckpoint(step, folder); }
    }
}
