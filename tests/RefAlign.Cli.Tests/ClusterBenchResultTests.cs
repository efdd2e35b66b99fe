using System.Text.Json;
using RefAlign.Cli.Commands;
using RefAlign.Cli.Commands.Bench;
using static RefAlign.Cli.Commands.Bench.ClusterBench;

namespace RefAlign.Cli.Tests;

/// <summary><c>bench cluster</c>'s ratios from given figures: each against its floor, the transfer's median and minimum.</summary>
public sealed class ClusterBenchResultTests
{
    static readonly Dictionary<string, double[]> NoPhases = [];

    static Result Figures() => new(10,
        new Overhead(LocalStepSeconds: 2.0, GrainStepSeconds: 2.1, NoPhases),
        new Transfer(80e6, SyncsVsRawTcp: [0.9, 0.3, 0.85, 0.7, 0.95], RawTcpMBPerSecond: 1000, RawTcpSlowestToMedian: 0.84, FirstSyncSeconds: 0.5),
        new Broadcast(OneSeconds: 0.2, ThreeSeconds: 0.5, Silos: 3, new RelayFloor(Ratio: 2.0, OneHopSeconds: 0.1, ThreeHopSeconds: 0.2)),
        new Scale(OneSiloSeconds: 4.0, TwoSilosSeconds: 3.0, HostParallelFloor: 0.55, GenerationParallelFloor: 0.6, OneSiloSyncSeconds: 0.1, TwoSilosSyncSeconds: 0.4),
        new Pipelining(SyncStepSeconds: 3.0, PipelinedStepSeconds: 2.0,
            new Dictionary<string, double[]> { ["generate"] = [1.2, 0.1], ["score"] = [0.5, 0.6], ["learn"] = [1.2, 1.2] }, HostParallelFloor: 0.52));

    [Fact]
    public void Each_cluster_ratio_is_its_figure_over_what_it_is_judged_against()
    {
        var ratios = Figures().Ratios;
        Assert.Equal(2.1 / 2.0, ratios["orchestration_overhead"], 12);
        Assert.Equal(0.85, ratios["transfer_vs_raw_tcp"]); // the median of five syncs, not the slowest
        Assert.Equal(0.3, ratios["transfer_vs_raw_tcp_min"]);
        Assert.Equal(0.84, ratios["raw_tcp_slowest_vs_median"]);
        Assert.Equal(2.5, ratios["broadcast_3_vs_1"], 12);
        Assert.Equal(2.0, ratios["broadcast_3_vs_1_floor"]);
        Assert.Equal(1.25, ratios["broadcast_over_floor"], 12);
        Assert.Equal(0.75, ratios["generate_2_silos_vs_1"], 12);
        Assert.Equal(0.6, ratios["generation_parallel_floor"]);
        Assert.Equal(1.25, ratios["scale_out_over_floor"], 12);
        Assert.Equal(1.5, ratios["pipelined_speedup"], 12);
        // Every ratio has its goal on the benchmark page, apart from the floors and the host's own spread it is judged by.
        Assert.All(ratios.Keys.Except(["broadcast_3_vs_1", "broadcast_3_vs_1_floor", "generate_2_silos_vs_1", "generation_parallel_floor", "raw_tcp_slowest_vs_median"]),
            name => Assert.True(BenchReport.Goals.ContainsKey(name), name));
    }

    [Fact]
    public void Each_sync_is_judged_against_the_raw_streams_taken_just_before_and_after_it()
    {
        // Raw TCP moved from 2 GB/s to 1 GB/s and back while the syncs ran at 0.9, 0.75 and 1.6 GB/s.
        var ratios = Transfer.AgainstRawAround([(90e6, 0.1), (75e6, 0.1), (160e6, 0.1)], [2e9, 1e9, 1e9, 2e9]);
        Assert.Equal([0.9 / 1.5, 0.75 / 1.0, 1.6 / 1.5], ratios, (x, y) => Math.Abs(x - y) < 1e-12);
        Assert.Throws<ArgumentException>(() => Transfer.AgainstRawAround([(1, 1)], [1]));
        var t = new Transfer(80e6, ratios, 1500, 0.66, 0.2, [900, 750, 1600]);
        Assert.Equal(900, t.MedianMBPerSecond);
        Assert.Equal(0.6, t.Min, 12); // the first sync: slow while raw TCP was fast around it
    }

    [Fact]
    public void A_broadcast_round_is_judged_against_the_relay_floor_taken_in_the_same_round()
    {
        // The host slowed down in the second round: its syncs and its relay pair slowed together, so that round's ratio
        // over its own floor stays where the others are.
        var b = Broadcast.FromRounds([(0.05, 0.10, 0.04, 0.06), (0.10, 0.30, 0.05, 0.14), (0.05, 0.11, 0.04, 0.07)], silos: 3);
        Assert.Equal([2.0 / 1.5, 3.0 / 2.8, 2.2 / 1.75], b.RoundsOverFloor!, (x, y) => Math.Abs(x - y) < 1e-12);
        Assert.Equal(2.2 / 1.75, b.OverFloor, 12);
        Assert.Equal(0.05, b.OneSeconds);
        Assert.Equal(0.11, b.ThreeSeconds);
        Assert.Equal(1.75, b.Floor.Ratio, 12);
        Assert.Equal(3, b.Silos);
        Assert.Contains("one silo takes 10 ms beyond one bare TCP hop, to three 40 ms beyond the bare relay", b.Finding);
        Assert.Equal(0.0, Broadcast.FromRounds([], 0).OverFloor);
        Assert.Equal("", Broadcast.FromRounds([], 0).Finding);
    }

    [Fact]
    public void Scale_out_tells_the_weight_sync_from_the_sampling()
    {
        var s = Figures().Scale;
        Assert.Equal(2.6 / 3.9, s.SamplingRatio, 12);
        Assert.Contains("weight sync 0.100 s of the phase on one silo, 0.400 s on two", s.Finding);
        Assert.Contains($"sampling alone 2 ÷ 1 = {2.6 / 3.9:F3}, {2.6 / 3.9 / 0.6:F2}× the floor", s.Finding);
    }

    [Fact]
    public void Pipelining_names_its_bound_and_the_side_a_step_waits_on()
    {
        var p = Figures().Pipelining;
        // Sync: generation 1.2 s of a 3 s step, so the other side (1.8 s) bounds one-step-off at 3 ÷ 1.8.
        Assert.Equal(3.0 / 1.8, p.Bound, 12);
        Assert.Contains("scoring + learning (1.800 s) is the longer side", p.Finding);
        Assert.Contains("waits 0.100 s on the generator", p.Finding);
        Assert.Contains($"took {1.9 / 1.8:F2}× their sync time", p.Finding);
        Assert.Contains($"halved, {0.52:F2} here", p.Finding);
        var slow = p with { PhaseSeconds = new Dictionary<string, double[]> { ["generate"] = [2.0, 0.9] } };
        Assert.Contains("generation (2.000 s) is longer than scoring + learning (1.000 s)", slow.Finding);
        Assert.Equal(1.5, slow.Bound, 12);
    }

    [Fact]
    public void A_skipped_part_reports_zeros_not_infinities_in_its_json()
    {
        var skipped = new Result(10, new Overhead(0, 0, NoPhases), new Transfer(0, [], 0, 0, 0), new Broadcast(0, 0, 0, new RelayFloor(0, 0, 0)),
            new Scale(0, 0, 0, 0), new Pipelining(0, 0, NoPhases));
        Assert.All(skipped.Ratios, r => Assert.Equal(0.0, r.Value));
        Assert.Equal("", skipped.Pipelining.Finding);
        Assert.Equal("", skipped.Scale.Finding);
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(Figures(), CliSupport.Json));
        var ratios = doc.RootElement.GetProperty("ratios");
        Assert.Equal(1.5, ratios.GetProperty("pipelined_speedup").GetDouble(), 12);
        Assert.Equal(0.85, doc.RootElement.GetProperty("transfer").GetProperty("median").GetDouble());
        Assert.Equal(5, doc.RootElement.GetProperty("transfer").GetProperty("syncs_vs_raw_tcp").GetArrayLength());
    }
}
