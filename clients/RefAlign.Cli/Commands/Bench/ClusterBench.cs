using System.CommandLine;
using RefAlign.Client;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// <c>refalign bench cluster</c>: (1) orchestration overhead — a RefAlign step through the grains on one silo over the
/// same step in-process (<c>refalign train</c>'s services); (2) weight transfer between two silo processes on loopback
/// against raw loopback TCP moving the same bytes, taken just before and after each of 5 syncs (the median ratio is the
/// figure, the minimum beside it; a fresh silo's first sync is a warm-up reported on its own), and
/// a broadcast — one sync to three generator silos (relayed, the learner sends once) over one, next to bare TCP relayed
/// the same way in the same rounds (<see cref="HostFloors.RelayChain"/>); (3) scale-out — the generation phase of a two-shard run with one
/// generator silo, then with two (separate processes, one compute and one libtorch thread each), next to this host's own
/// floors for it (<see cref="HostFloors"/>): a CPU-bound loop's, and the same rollouts' on two threads of this process;
/// (4) pipelining — sync against one-step-off steps on a learner silo and a generator silo. Broadcast and scale-out are
/// judged against their floors (<c>broadcast_over_floor</c>, <c>scale_out_over_floor</c>).
/// </summary>
internal static partial class ClusterBench
{
    public static Command Create()
    {
        var steps = new Option<int>("--steps") { Description = "Steps of the overhead and pipelining runs.", DefaultValueFactory = _ => 10 };
        var preset = new Option<string>("--preset") { Description = "Policy preset of both measurements.", DefaultValueFactory = _ => "small" };
        var only = new Option<string>("--only")
        {
            Description = "all; transfer: only the weight transfer and broadcast parts; overhead: only the one-silo overhead; scale: only the scale-out part; pipelining: only sync vs pipelined steps.",
            DefaultValueFactory = _ => "all",
        };
        only.AcceptOnlyFromAmong("all", "transfer", "overhead", "scale", "pipelining");
        var json = CliSupport.JsonOption();
        var cmd = new Command("cluster", "Orchestration overhead, silo-to-silo weight transfer vs raw TCP, scale-out and pipelining against this host's floors.")
        {
            steps, preset, only, json,
        };
        cmd.SetAction(async (r, ct) => await CliSupport.RunAsync(async () =>
        {
            BenchSupport.UseDevice(r);
            var res = await RunAsync(r.GetValue(steps), r.GetValue(preset)!, r.GetValue(only)!, r.GetValue(json), ct);
            BenchSupport.Emit(r, "cluster", res, r.GetValue(json), () => BenchSupport.Print("Cluster", Rows(res)));
            return 0;
        }));
        return cmd;
    }

    /// <summary>The human table: each ratio with its goal and, where the host bounds it, its floor.</summary>
    static IEnumerable<(string, string)> Rows(Result res)
    {
        var (o, t, b, s, p) = (res.Overhead, res.Transfer, res.Broadcast, res.Scale, res.Pipelining);
        return [
            ("RefAlign step, in-process (median)", $"{o.LocalStepSeconds:F3} s"),
            ("RefAlign step, grains on one silo (median)", $"{o.GrainStepSeconds:F3} s"),
            ("orchestration overhead (goal ≤ 1.05)", $"{o.Ratio:F3}"),
            ("phases in-process → grains", string.Join(", ", o.PhaseSeconds.Select(x => $"{x.Key} {x.Value[0]:F3} → {x.Value[1]:F3} s"))),
            ("weights moved per sync", $"{t.SyncBytes / 1e6:F1} MB"),
            ("silo→silo weight transfer (median of 5 syncs)", $"{t.MedianMBPerSecond:F0} MB/s"),
            ("raw loopback TCP, the same bytes on a fresh connection (median of 6, around the syncs)", $"{t.RawTcpMBPerSecond:F0} MB/s"),
            ("each sync ÷ the raw TCP just before and after it, median of 5 (goal ≥ 0.8)", $"{t.Median:F2} (range {t.Min:F2}–{t.Max:F2})"),
            ("each sync ÷ the raw TCP around it, min of 5 (goal ≥ 0.5)", $"{t.Min:F2}"),
            ("raw TCP's own slowest of 6 ÷ its median (the host's own spread)", $"{t.RawTcpSlowestToMedian:F2}"),
            ("first sync of a fresh silo (warm-up, not in the 5)", $"{t.FirstSyncSeconds:F3} s"),
            ("sync to 3 generator silos ÷ to 1, medians of 7 rounds", $"{b.Ratio:F2} ({b.OneSeconds:F3} s → {b.ThreeSeconds:F3} s, {b.Silos} silos)"),
            ("floor: bare TCP relayed over 3 hops ÷ 1, in the same rounds", $"{b.Floor.Ratio:F2} ({b.Floor.OneHopSeconds:F3} s → {b.Floor.ThreeHopSeconds:F3} s)"),
            ("broadcast ÷ its floor, each round's own, median (goal ≤ 1.2)", $"{b.OverFloor:F2}"),
            ("where a broadcast's time goes", b.Finding),
            ("generation phase, 1 generator silo (median)", $"{s.OneSiloSeconds:F3} s"),
            ("generation phase, 2 generator silos (median)", $"{s.TwoSilosSeconds:F3} s"),
            ("2 silos ÷ 1", $"{s.Ratio:F3}"),
            ("floor: the same rollouts in-process, 2 shards on 2 threads ÷ on 1", $"{s.GenerationParallelFloor:F3}"),
            ("host's CPU-bound floor: 2 threads ÷ 1, halved", $"{s.HostParallelFloor:F3} (0.5 on two free cores)"),
            ("scale-out ÷ its floor (goal ≤ 1.1)", $"{s.OverFloor:F3}"),
            ("where the generation phase goes", s.Finding),
            ("RefAlign step, sync → pipelined (median, 1 learner + 1 generator silo)", $"{p.SyncStepSeconds:F3} s → {p.PipelinedStepSeconds:F3} s"),
            ("pipelined speed-up (goal ≥ 1.3)", $"{p.Speedup:F2} (this host's bound {p.Bound:F2})"),
            ("phases sync → pipelined", string.Join(", ", p.PhaseSeconds.Select(x => $"{x.Key} {x.Value[0]:F3} → {x.Value[1]:F3} s"))),
            ("where a pipelined step waits", p.Finding),
        ];
    }

    static Task<Result> RunAsync(int steps, string preset, string only, bool quiet, CancellationToken ct) =>
        BenchSupport.InWorkFolderAsync("refalign-bench-cluster-", async dir =>
        {
            BenchSupport.Step(quiet, "writing models and data", () =>
            {
                ModelPresets.Initialize(Path.Combine(dir, "policy"), preset, "llama", seed: 1);
                EncoderPresets.Initialize(Path.Combine(dir, "encoder"), "tiny-roberta", seed: 2);
                DemoData.WriteTo(Path.Combine(dir, "data"));
            });
            bool Runs(string part) => only == "all" || only == part;
            var overhead = Runs("overhead") ? await Step(quiet, "in-process steps, then grain steps on one silo", () => OverheadAsync(dir, steps, ct))
                : new Overhead(0, 0, new Dictionary<string, double[]>());
            var (transfer, broadcast) = Runs("transfer")
                ? await Step(quiet, "weight transfer between two silos, a broadcast to three, then raw and relayed TCP", () => TransferAsync(dir, ct))
                : (new Transfer(0, [], 0, 0, 0), new Broadcast(0, 0, 0, new RelayFloor(0, 0, 0)));
            var scale = Runs("scale") ? await Step(quiet, "generation on one, then two generator silos", () => ScaleAsync(dir, ct)) : new Scale(0, 0, 0, 0);
            var pipelining = Runs("pipelining") ? await Step(quiet, "sync, then pipelined steps on a learner and a generator silo", () => PipeliningAsync(dir, steps, ct))
                : new Pipelining(0, 0, new Dictionary<string, double[]>());
            return new Result(steps, overhead, transfer, broadcast, scale, pipelining);
        });

    /// <summary>The same steps in this process, through the services <c>refalign train</c> uses, then through the grains of one silo.</summary>
    static async Task<Overhead> OverheadAsync(string dir, int steps, CancellationToken ct)
    {
        var config = Config("policy", steps, shards: 1);
        var local = new Dictionary<string, List<double>>();
        await InDirectory(dir, async () =>
        {
            var cfg = RunConfig.Parse(config).Validate(requirePaths: false) with { OutputDir = Path.Combine(dir, "local") };
            var tok = TextTokenizer.Load(cfg.Policy.Model);
            var data = TrainingData.Load(cfg, tok);
            using var services = new LocalTrainingServices(cfg, tok, data);
            await new TrainingRun("local", cfg, data, services, new StepTimes(local)).RunAsync(ct);
            return 0;
        });
        await using var silo = await LocalSilo.StartAsync(dir, ct, "bench-silo");
        using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(silo.GrpcAddress) });
        var grain = await StepPhasesAsync(client, config, "overhead", ct);
        return new Overhead(StepMedian(local), StepMedian(grain), PhaseMedians(local, grain));
    }

    /// <summary>
    /// The generation phase of a two-shard run on one generator silo, then on two; each silo one thread of libtorch. The
    /// in-process floor is taken right before the first run and right after the second (their mean), so it sees the
    /// host as the runs between them did.
    /// </summary>
    static async Task<Scale> ScaleAsync(string dir, CancellationToken ct)
    {
        var hostFloor = HostFloors.Spin();
        var floorBefore = await GenerationFloorAsync(dir);
        await using var a = await LocalSilo.StartAsync(dir, ct, "scale-a", [.. SingleThreaded, "--Silo:Roles=learner,scorer,reference"]);
        string[] join = [.. SingleThreaded, "--Silo:Roles=generator", $"--Cluster:PrimarySiloEndpoint=127.0.0.1:{a.SiloPort}"];
        await using var b = await LocalSilo.StartAsync(dir, ct, "scale-b", join);
        using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(a.GrpcAddress) });
        var oneSilo = await StepPhasesAsync(client, ScaleConfig, "scale-out", ct);
        await using var c = await LocalSilo.StartAsync(dir, ct, "scale-c", join);
        await BenchSupport.WaitForGeneratorsAsync(client, 2, ct);
        var twoSilos = await StepPhasesAsync(client, ScaleConfig, "scale-out", ct);
        var floorAfter = await GenerationFloorAsync(dir);
        // From step 3 on: step 1 loads and compiles, step 2 carries a fresh replica's first weight sync (its warm-up, as in
        // the transfer part); the sync list starts at step 2.
        double Generate(Dictionary<string, List<double>> run) => WarmMedian(run.GetValueOrDefault("generate", []), warmUps: 2);
        double Sync(Dictionary<string, List<double>> run) => WarmMedian(run.GetValueOrDefault("weight_sync", []));
        return new Scale(Generate(oneSilo), Generate(twoSilos), hostFloor, (floorBefore + floorAfter) / 2, Sync(oneSilo), Sync(twoSilos));
    }

    static Task<double> GenerationFloorAsync(string dir) => InDirectory(dir, () =>
    {
        var cfg = RunConfig.Parse(ScaleConfig).Validate(requirePaths: false);
        var tok = TextTokenizer.Load(cfg.Policy.Model);
        return Task.FromResult(HostFloors.Generation(cfg, tok, TrainingData.Load(cfg, tok)));
    });

    /// <summary>The scale-out part's run: two shards, nine steps (seven after the warm-ups).</summary>
    static string ScaleConfig => Config("policy", 9, shards: 2);

    /// <summary>Runs <paramref name="work"/> with <paramref name="dir"/> as the working directory (run configs name relative paths).</summary>
    static async Task<T> InDirectory<T>(string dir, Func<Task<T>> work)
    {
        var cwd = Environment.CurrentDirectory;
        Environment.CurrentDirectory = dir;
        try { return await work(); }
        finally { Environment.CurrentDirectory = cwd; }
    }

    static async Task<T> Step<T>(bool quiet, string label, Func<Task<T>> work)
    {
        if (!quiet) Console.Error.WriteLine($"bench: {label}…");
        return await work();
    }

    /// <summary>Each in-process step's phase seconds (<c>step</c> included), as <see cref="StepPhasesAsync"/> collects a grain run's.</summary>
    sealed class StepTimes(Dictionary<string, List<double>> phases) : IRunObserver
    {
        public void OnStep(StepReport report)
        {
            foreach (var (k, v) in report.PhaseSeconds) (phases.TryGetValue(k, out var l) ? l : phases[k] = []).Add(v);
        }
    }

    static string Config(string model, int steps, int shards, int batch = 8, int samples = 4, int tokens = 24, string mode = "sync") => $$"""
        { "name": "bench", "algorithm": "refalign", "seed": 5,
          "policy": { "model": "{{model}}" },
          "data": { "path": "data/references.jsonl", "max_prompt_length": 48 },
          "optimizer": { "kind": "adamw", "learning_rate": 0.001, "warmup_steps": 0 },
          "refalign": { "reward_model": "encoder", "num_samples": {{samples}}, "max_new_tokens": {{tokens}} },
          "batch_size": {{batch}}, "micro_batch_size": 16, "max_steps": {{steps}}, "eval_every": 0, "checkpoint_every": 0,
          "output_dir": "runs", "distributed": { "shards": {{shards}}, "mode": "{{mode}}", "max_staleness": 1 } }
        """;
}
