using RefAlign.Client;

namespace RefAlign.Cli.Commands.Bench;

internal static partial class ClusterBench
{
    /// <summary>
    /// The same RefAlign steps in <c>distributed.mode: sync</c>, then in <c>pipelined</c> (<c>max_staleness: 1</c>), on
    /// one learner silo and one generator silo, each on one compute and one libtorch thread: one-step-off sampling can
    /// then use the second core while the learner's is busy. Each run's first step is a warm-up (JIT, first weights).
    /// </summary>
    static async Task<Pipelining> PipeliningAsync(string dir, int steps, CancellationToken ct)
    {
        await using var a = await LocalSilo.StartAsync(dir, ct, "pipe-a", [.. SingleThreaded, "--Silo:Roles=learner,scorer,reference"]);
        await using var b = await LocalSilo.StartAsync(dir, ct, "pipe-b",
            [.. SingleThreaded, "--Silo:Roles=generator", $"--Cluster:PrimarySiloEndpoint=127.0.0.1:{a.SiloPort}"]);
        using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(a.GrpcAddress) });
        await BenchSupport.WaitForGeneratorsAsync(client, 1, ct);
        var sync = await StepPhasesAsync(client, Config("policy", steps, shards: 1), "pipelining (sync)", ct);
        var pipelined = await StepPhasesAsync(client, Config("policy", steps, shards: 1, mode: "pipelined"), "pipelining (pipelined)", ct);
        // Right after the runs: how far two threads get on this host's cores at the time (idle silos aside).
        return new Pipelining(StepMedian(sync), StepMedian(pipelined), PhaseMedians(sync, pipelined), HostFloors.Spin());
    }

    static double StepMedian(Dictionary<string, List<double>> phases) => WarmMedian(phases.GetValueOrDefault("step", []));

    /// <summary>Per phase both runs have (the step itself aside), its median in the first and in the second.</summary>
    static Dictionary<string, double[]> PhaseMedians(Dictionary<string, List<double>> first, Dictionary<string, List<double>> second) =>
        first.Keys.Intersect(second.Keys).Where(k => k != "step").ToDictionary(k => k, k => new[] { WarmMedian(first[k]), WarmMedian(second[k]) });

    /// <summary>A silo on one compute and one libtorch thread, as a silo with one core to itself runs.</summary>
    static readonly string[] SingleThreaded = ["--Silo:TorchThreads=1", "--Silo:ComputeThreads=1"];

    /// <summary>The median without the first <paramref name="warmUps"/> values (a run's first step is its warm-up); 0 when nothing is left.</summary>
    static double WarmMedian(List<double> x, int warmUps = 1) => x.Count <= warmUps ? 0 : BenchSupport.Middle(x.Skip(warmUps));

    /// <summary>
    /// Runs <paramref name="config"/> to its end and returns each phase's seconds (<c>step</c> included), step by step,
    /// with the step's weight sync (the slowest generator's fetch, inside its <c>generate</c>) as <c>weight_sync</c>.
    /// </summary>
    static async Task<Dictionary<string, List<double>>> StepPhasesAsync(RefAlignClient client, string config, string what, CancellationToken ct)
    {
        var phases = new Dictionary<string, List<double>>();
        var id = await client.StartRunAsync(config, ct);
        void Add(string phase, double seconds) => (phases.TryGetValue(phase, out var l) ? l : phases[phase] = []).Add(seconds);
        await foreach (var e in client.WatchRunAsync(id, 0, ct))
        {
            if (e.Kind == RunEventKind.Phase && e.Phase is { } phase && e.PhaseSeconds is { } s) Add(phase, s);
            if (e.Kind == RunEventKind.Step && e.Metrics.TryGetValue("weight_sync/seconds", out var sync)) Add("weight_sync", sync);
        }
        await BenchSupport.EnsureCompletedAsync(client, id, what, ct);
        return phases;
    }
}
