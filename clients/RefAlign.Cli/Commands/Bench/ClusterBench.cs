using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
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
/// against raw loopback TCP measured in the same run (each of 5 syncs ÷ the median of 5 raw TCP runs; the minimum is the
/// figure; each run's first sync, a fresh silo's cold one, is a warm-up reported on its own), and a broadcast — one sync to three generator silos (relayed, the learner sends once) over one,
/// next to bare TCP relayed the same way (<see cref="HostFloors.Relay"/>); (3) scale-out — the generation phase of a two-shard run with one
/// generator silo, then with two (separate processes, one compute and one libtorch thread each), next to this host's own
/// floors for it (<see cref="HostFloors"/>): a CPU-bound loop's, and the same rollouts' on two threads of this process.
/// </summary>
internal static class ClusterBench
{
    public static Command Create()
    {
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 10 };
        var preset = new Option<string>("--preset") { Description = "Policy preset of both measurements.", DefaultValueFactory = _ => "small" };
        var only = new Option<string>("--only")
        {
            Description = "all; transfer: only the weight transfer and broadcast parts; overhead: only the one-silo overhead; scale: only the scale-out part.",
            DefaultValueFactory = _ => "all",
        };
        only.AcceptOnlyFromAmong("all", "transfer", "overhead", "scale");
        var json = CliSupport.JsonOption();
        var cmd = new Command("cluster", "Orchestration overhead on one silo, and silo-to-silo weight transfer vs raw TCP.") { steps, preset, only, json };
        cmd.SetAction(async (r, ct) => await CliSupport.RunAsync(async () =>
        {
            BenchSupport.UseDevice(r);
            var res = await RunAsync(r.GetValue(steps), r.GetValue(preset)!, r.GetValue(only)!, r.GetValue(json), ct);
            BenchSupport.Emit(r, "cluster", res, r.GetValue(json), () => BenchSupport.Print("Cluster", [
                ("RefAlign step, in-process (median)", $"{res.LocalStepSeconds:F3} s"),
                ("RefAlign step, grains on one silo (median)", $"{res.GrainStepSeconds:F3} s"),
                ("orchestration overhead (goal ≤ 1.05)", $"{res.OverheadRatio:F3}"),
                ("phases in-process → grains", string.Join(", ", res.PhaseSeconds.Select(p => $"{p.Key} {p.Value[0]:F3} → {p.Value[1]:F3} s"))),
                ("weights moved per sync", $"{res.SyncBytes / 1e6:F1} MB"),
                ("silo→silo weight transfer (slowest of 5 syncs)", $"{res.TransferMBps:F0} MB/s"),
                ("raw loopback TCP (median of 5)", $"{res.RawTcpMBps:F0} MB/s"),
                ("transfer ÷ raw TCP, min of 5 (goal ≥ 0.8)", $"{res.TransferToTcp:F2} (range {res.TransferToTcpRange[0]:F2}–{res.TransferToTcpRange[1]:F2})"),
                ("first sync of a fresh silo (warm-up, not in the 5)", $"{res.FirstSyncSeconds:F3} s"),
                ("raw TCP's own slowest of 5 ÷ its median (what min of 5 costs on this host)", $"{res.RawTcpSlowestToMedian:F2}"),
                ("sync to 3 generator silos ÷ to 1, median (goal ≤ 1.3)", $"{res.Broadcast3Vs1:F2} ({res.BroadcastOneSeconds:F3} s → {res.BroadcastThreeSeconds:F3} s, {res.BroadcastSilos} silos)"),
                ("this host's floor for it: bare TCP relayed over 3 hops ÷ 1, median of 5", $"{res.RelayFloor.Ratio:F2} ({res.RelayFloor.OneHopSeconds:F3} s → {res.RelayFloor.ThreeHopSeconds:F3} s)"),
                ("generation phase, 1 generator silo (median)", $"{res.GenerateOneSilo:F3} s"),
                ("generation phase, 2 generator silos (median)", $"{res.GenerateTwoSilos:F3} s"),
                ("2 silos ÷ 1 (goal ≤ 0.6)", $"{res.GenerateRatio:F3}"),
                ("this host's floor for it: 2 CPU-bound threads ÷ 1, halved", $"{res.HostParallelFloor:F3} (0.5 on two free cores)"),
                ("the same rollouts in-process: 2 shards on 2 threads ÷ on 1", $"{res.GenerationParallelFloor:F3}"),
            ]));
            return 0;
        }));
        return cmd;
    }

    /// <remarks><c>PhaseSeconds</c>: per phase, the median in-process and through-the-grains seconds.</remarks>
    internal sealed record Result(int Steps, double LocalStepSeconds, double GrainStepSeconds, double OverheadRatio,
        IReadOnlyDictionary<string, double[]> PhaseSeconds,
        double SyncBytes, double TransferMBps, double RawTcpMBps, double TransferToTcp, double[] TransferToTcpRange, double RawTcpSlowestToMedian,
        double FirstSyncSeconds, double BroadcastOneSeconds, double BroadcastThreeSeconds, int BroadcastSilos, RelayFloor RelayFloor,
        double GenerateOneSilo, double GenerateTwoSilos, double HostParallelFloor, double GenerationParallelFloor)
    {
        public double GenerateRatio => GenerateOneSilo > 0 ? GenerateTwoSilos / GenerateOneSilo : 0;
        public double Broadcast3Vs1 => BroadcastOneSeconds > 0 ? BroadcastThreeSeconds / BroadcastOneSeconds : 0;

        /// <summary>The figures scripts compare against their goals, under the names every bench uses.</summary>
        public IReadOnlyDictionary<string, double> Ratios => new Dictionary<string, double>
        {
            ["orchestration_overhead"] = OverheadRatio, ["transfer_vs_raw_tcp"] = TransferToTcp, ["generate_2_silos_vs_1"] = GenerateRatio,
            ["broadcast_3_vs_1"] = Broadcast3Vs1, ["broadcast_3_vs_1_floor"] = RelayFloor.Ratio, ["raw_tcp_slowest_vs_median"] = RawTcpSlowestToMedian,
        };
    }

    /// <summary>Bare TCP relayed over three hops ÷ one (<see cref="HostFloors.Relay"/>), with the two medians' seconds.</summary>
    internal sealed record RelayFloor(double Ratio, double OneHopSeconds, double ThreeHopSeconds);

    static async Task<Result> RunAsync(int steps, string preset, string only, bool quiet, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("refalign-bench-cluster-").FullName;
        try
        {
            BenchSupport.Step(quiet, "writing models and data", () =>
            {
                ModelPresets.Initialize(Path.Combine(dir, "policy"), preset, "llama", seed: 1);
                EncoderPresets.Initialize(Path.Combine(dir, "encoder"), "tiny-roberta", seed: 2);
                DemoData.WriteTo(Path.Combine(dir, "data"));
            });
            var config = Config("policy", steps, shards: 1);

            // (1a) the same steps in this process, through the services `refalign train` uses.
            var local = new List<double>();
            var localPhases = new Dictionary<string, List<double>>();
            var grainPhases = new Dictionary<string, List<double>>();
            bool Runs(string part) => only == "all" || only == part;
            if (Runs("overhead")) await Step(quiet, "in-process steps", () => InDirectory(dir, async () =>
            {
                var cfg = RunConfig.Parse(config).Validate(requirePaths: false) with { OutputDir = Path.Combine(dir, "local") };
                var tok = TextTokenizer.Load(cfg.Policy.Model);
                var data = TrainingData.Load(cfg, tok);
                using var services = new LocalTrainingServices(cfg, tok, data);
                await new TrainingRun("local", cfg, data, services, new StepTimes(local, localPhases)).RunAsync(ct);
                return 0;
            }));

            // (1b) the same config through the grains of one silo.
            var grain = new List<double>();
            if (Runs("overhead")) await Step(quiet, "grain steps on one silo", async () =>
            {
                await using var silo = await LocalSilo.StartAsync(dir, ct, "bench-silo");
                using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(silo.GrpcAddress) });
                var id = await client.StartRunAsync(config, ct);
                await foreach (var e in client.WatchRunAsync(id, 0, ct))
                    if (e.Kind == RunEventKind.Phase && e.PhaseSeconds is { } s)
                    {
                        if (e.Phase == "step") grain.Add(s);
                        (grainPhases.TryGetValue(e.Phase!, out var l) ? l : grainPhases[e.Phase!] = []).Add(s);
                    }
            });

            // (2) weights between silo processes: learner on A, generator on B; every step B pulls the new version (5 syncs).
            // Then C and D join and a three-shard run syncs three generator silos at once, relayed A → B → C → D.
            List<(double Bytes, double Seconds)> syncs = [], broadcast = [], warmUps = [];
            var broadcastSilos = 0;
            if (Runs("transfer")) await Step(quiet, "weight transfer between two silos, then a broadcast to three", async () =>
            {
                await using var a = await LocalSilo.StartAsync(dir, ct, "silo-a", "--Silo:Roles=learner,scorer,reference");
                string[] join = ["--Silo:Roles=generator", $"--Cluster:PrimarySiloEndpoint=127.0.0.1:{a.SiloPort}"];
                await using var b = await LocalSilo.StartAsync(dir, ct, "silo-b", join);
                using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(a.GrpcAddress) });
                await SyncTimes(client, shards: 1, syncs, warmUps, ct);
                await using var c = await LocalSilo.StartAsync(dir, ct, "silo-c", join);
                await using var d = await LocalSilo.StartAsync(dir, ct, "silo-d", join);
                await BenchSupport.WaitForGeneratorsAsync(client, 3, ct);
                // Placement picks a generator silo at random per shard: six shards, retried until they cover all three.
                for (var attempt = 0; attempt < 4 && broadcastSilos < 3; attempt++)
                {
                    broadcast.Clear();
                    broadcastSilos = await SyncTimes(client, shards: 6, broadcast, warmUps, ct);
                }
            });
            var raws = new List<double>();
            var relayFloor = new RelayFloor(0, 0, 0);
            if (Runs("transfer")) await Step(quiet, "raw loopback TCP, then relayed over 3 hops", async () =>
            {
                for (var i = 0; i < 5; i++) raws.Add(await RawTcpBytesPerSecond(256 << 20, ct));
                var (ratio, one, three) = await HostFloors.Relay((int)(syncs.Count == 0 ? 80e6 : syncs.Average(s => s.Bytes)), ct);
                relayFloor = new RelayFloor(ratio, one, three);
            });
            var raw = raws.Count == 0 ? 0 : BenchSupport.Middle(raws);
            var rates = syncs.Select(s => s.Bytes / s.Seconds / raw).ToList();

            // (3) the generation phase of a two-shard run on one generator silo, then on two; each silo one thread of libtorch.
            List<double> oneSilo = [], twoSilos = [];
            var (hostFloor, generationFloor) = (0.0, 0.0);
            if (Runs("scale")) await Step(quiet, "generation on one, then two generator silos", async () =>
            {
                hostFloor = HostFloors.Spin();
                generationFloor = await InDirectory(dir, () =>
                {
                    var cfg = RunConfig.Parse(ScaleConfig).Validate(requirePaths: false);
                    var tok = TextTokenizer.Load(cfg.Policy.Model);
                    return Task.FromResult(HostFloors.Generation(cfg, tok, TrainingData.Load(cfg, tok)));
                });
                string[] single = ["--Silo:TorchThreads=1", "--Silo:ComputeThreads=1"];
                await using var a = await LocalSilo.StartAsync(dir, ct, "scale-a", [.. single, "--Silo:Roles=learner,scorer,reference"]);
                string[] join = [.. single, "--Silo:Roles=generator", $"--Cluster:PrimarySiloEndpoint=127.0.0.1:{a.SiloPort}"];
                await using var b = await LocalSilo.StartAsync(dir, ct, "scale-b", join);
                using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(a.GrpcAddress) });
                await GenerationSeconds(client, oneSilo, ct);
                await using var c = await LocalSilo.StartAsync(dir, ct, "scale-c", join);
                await BenchSupport.WaitForGeneratorsAsync(client, 2, ct);
                await GenerationSeconds(client, twoSilos, ct);
            });

            double Median(List<double> x) => BenchSupport.Middle(x.Skip(1));
            var phaseMedians = localPhases.Keys.Intersect(grainPhases.Keys).Where(k => k != "step")
                .ToDictionary(k => k, k => new[] { Median(localPhases[k]), Median(grainPhases[k]) });
            // Parts skipped by --only report 0 (JSON has no NaN).
            double MedianOf(List<double> x) => x.Count == 0 ? 0 : x.Order().ElementAt((x.Count - 1) / 2);
            double M(List<double> x) => x.Count < 2 ? 0 : Median(x);
            var slowest = rates.Count == 0 ? 0 : rates.Min();
            return new Result(steps, M(local), M(grain), M(local) > 0 ? M(grain) / M(local) : 0, phaseMedians,
                syncs.Count == 0 ? 0 : syncs.Average(s => s.Bytes), slowest * raw / 1e6, raw / 1e6, slowest, [slowest, rates.Count == 0 ? 0 : rates.Max()],
                raws.Count == 0 ? 0 : raws.Min() / raw, warmUps.Count == 0 ? 0 : warmUps[0].Seconds,
                MedianOf([.. syncs.Select(s => s.Seconds)]), MedianOf([.. broadcast.Select(s => s.Seconds)]), broadcastSilos, relayFloor, M(oneSilo), M(twoSilos), hostFloor,
                generationFloor);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Runs a two-shard RefAlign run to its end and adds each step's generation-phase seconds.</summary>
    static async Task GenerationSeconds(RefAlignClient client, List<double> sink, CancellationToken ct)
    {
        var id = await client.StartRunAsync(ScaleConfig, ct);
        await foreach (var e in client.WatchRunAsync(id, 0, ct))
            if (e.Kind == RunEventKind.Phase && e.Phase == "generate" && e.PhaseSeconds is { } s) sink.Add(s);
        await BenchSupport.EnsureCompletedAsync(client, id, "scale-out", ct);
    }

    /// <summary>
    /// Runs seven steps (six weight syncs) with <paramref name="shards"/> generator shards and adds each sync's bytes and
    /// seconds (the slowest shard's fetch and verify), the first one to <paramref name="warmUps"/>: it is a fresh
    /// replica's first (JIT, first touch of its buffers), not the steady state a run spends its time in. Returns how many
    /// generator silos the shards were spread over.
    /// </summary>
    static async Task<int> SyncTimes(RefAlignClient client, int shards, List<(double Bytes, double Seconds)> sink,
        List<(double Bytes, double Seconds)> warmUps, CancellationToken ct)
    {
        // The weights are the preset's whatever the batch: a small batch and short samples keep each step quick.
        var id = await client.StartRunAsync(Config("policy", 7, shards, batch: 6, samples: 2, tokens: 4), ct);
        var silos = new HashSet<string>();
        var first = true;
        await foreach (var e in client.WatchRunAsync(id, 0, ct))
        {
            if (e.Kind != RunEventKind.Step) continue;
            if (e.Metrics.TryGetValue("weight_sync/bytes", out var bytes))
            {
                (first ? warmUps : sink).Add((bytes / shards, e.Metrics["weight_sync/seconds"]));
                first = false;
            }
            foreach (var g in (await client.GetClusterAsync(ct)).Generators.Where(g => g.RunId == id)) silos.Add(g.Silo);
        }
        await BenchSupport.EnsureCompletedAsync(client, id, "transfer", ct);
        return silos.Count;
    }

    /// <summary>The scale-out part's run: two shards, six steps.</summary>
    static string ScaleConfig => Config("policy", 6, shards: 2);

    /// <summary>Runs <paramref name="work"/> with <paramref name="dir"/> as the working directory (run configs name relative paths).</summary>
    static async Task<T> InDirectory<T>(string dir, Func<Task<T>> work)
    {
        var cwd = Environment.CurrentDirectory;
        Environment.CurrentDirectory = dir;
        try { return await work(); }
        finally { Environment.CurrentDirectory = cwd; }
    }

    static async Task Step(bool quiet, string label, Func<Task> work)
    {
        if (!quiet) Console.Error.WriteLine($"bench: {label}…");
        await work();
    }

    sealed class StepTimes(List<double> sink, Dictionary<string, List<double>> phases) : IRunObserver
    {
        public void OnStep(StepReport report)
        {
            sink.Add(report.PhaseSeconds["step"]);
            foreach (var (k, v) in report.PhaseSeconds) (phases.TryGetValue(k, out var l) ? l : phases[k] = []).Add(v);
        }
    }

    static string Config(string model, int steps, int shards, int batch = 8, int samples = 4, int tokens = 24) => $$"""
        { "name": "bench", "algorithm": "refalign", "seed": 5,
          "policy": { "model": "{{model}}" },
          "data": { "path": "data/references.jsonl", "max_prompt_length": 48 },
          "optimizer": { "kind": "adamw", "learning_rate": 0.001, "warmup_steps": 0 },
          "refalign": { "reward_model": "encoder", "num_samples": {{samples}}, "max_new_tokens": {{tokens}} },
          "batch_size": {{batch}}, "micro_batch_size": 16, "max_steps": {{steps}}, "eval_every": 0, "checkpoint_every": 0,
          "output_dir": "runs", "distributed": { "shards": {{shards}} } }
        """;

    /// <summary>Bytes per second of one TCP stream over loopback (the same 16 MB writes the weight chunks use).</summary>
    static async Task<double> RawTcpBytesPerSecond(long total, CancellationToken ct)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var receive = Task.Run(async () =>
        {
            using var server = await listener.AcceptTcpClientAsync(ct);
            await using var stream = server.GetStream();
            var buffer = new byte[1 << 20];
            long got = 0;
            while (got < total)
            {
                var n = await stream.ReadAsync(buffer, ct);
                if (n == 0) break;
                got += n;
            }
            return got;
        }, ct);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, ct);
        await using var s = client.GetStream();
        var chunk = new byte[16 << 20];
        Random.Shared.NextBytes(chunk);
        var sw = Stopwatch.StartNew();
        for (long sent = 0; sent < total; sent += chunk.Length) await s.WriteAsync(chunk, ct);
        var received = await receive;
        return received / sw.Elapsed.TotalSeconds;
    }
}
