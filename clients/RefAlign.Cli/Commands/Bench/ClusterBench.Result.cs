namespace RefAlign.Cli.Commands.Bench;

internal static partial class ClusterBench
{
    /// <summary>
    /// <c>bench cluster</c>'s figures, one record per part. A part skipped by <c>--only</c> reports zeros (JSON has no
    /// NaN), and so does every ratio computed from it.
    /// </summary>
    internal sealed record Result(int Steps, Overhead Overhead, Transfer Transfer, Broadcast Broadcast, Scale Scale, Pipelining Pipelining)
    {
        /// <summary>The figures scripts compare against their goals, under the names every bench uses (goals: <see cref="BenchReport.Goals"/>).</summary>
        public IReadOnlyDictionary<string, double> Ratios => new Dictionary<string, double>
        {
            ["orchestration_overhead"] = Overhead.Ratio,
            ["transfer_vs_raw_tcp"] = Transfer.Median, ["transfer_vs_raw_tcp_min"] = Transfer.Min,
            ["raw_tcp_slowest_vs_median"] = Transfer.RawTcpSlowestToMedian,
            ["broadcast_3_vs_1"] = Broadcast.Ratio, ["broadcast_3_vs_1_floor"] = Broadcast.Floor.Ratio, ["broadcast_over_floor"] = Broadcast.OverFloor,
            ["generate_2_silos_vs_1"] = Scale.Ratio, ["generation_parallel_floor"] = Scale.GenerationParallelFloor, ["scale_out_over_floor"] = Scale.OverFloor,
            ["pipelined_speedup"] = Pipelining.Speedup,
        };
    }

    /// <summary>x ÷ y, or 0 where either is missing (a skipped part).</summary>
    static double Over(double x, double y) => x > 0 && y > 0 ? x / y : 0;

    /// <summary>A RefAlign step in-process and through the grains of one silo (medians); per phase, in-process then grains.</summary>
    internal sealed record Overhead(double LocalStepSeconds, double GrainStepSeconds, IReadOnlyDictionary<string, double[]> PhaseSeconds)
    {
        public double Ratio => Over(GrainStepSeconds, LocalStepSeconds);
    }

    /// <summary>
    /// Silo-to-silo weight syncs, each as bytes per second ÷ the raw loopback TCP streams of the same bytes taken just
    /// before and after it (<paramref name="SyncsVsRawTcp"/>, in the order taken): the median is the figure, the minimum
    /// says how bad the worst sync gets. <paramref name="RawTcpMBPerSecond"/> and <paramref name="RawTcpSlowestToMedian"/>
    /// describe the six raw streams (the host's own spread).
    /// </summary>
    internal sealed record Transfer(double SyncBytes, double[] SyncsVsRawTcp, double RawTcpMBPerSecond, double RawTcpSlowestToMedian, double FirstSyncSeconds,
        double[]? SyncsMBPerSecond = null)
    {
        public double Median => SyncsVsRawTcp.Length == 0 ? 0 : BenchSupport.Middle(SyncsVsRawTcp);
        public double Min => SyncsVsRawTcp.Length == 0 ? 0 : SyncsVsRawTcp.Min();
        public double Max => SyncsVsRawTcp.Length == 0 ? 0 : SyncsVsRawTcp.Max();
        public double MedianMBPerSecond => SyncsMBPerSecond is { Length: > 0 } s ? BenchSupport.Middle(s) : 0;

        /// <summary>
        /// Sync i's bytes per second ÷ the mean of raw streams i and i + 1 (<paramref name="raws"/> holds one more than
        /// <paramref name="syncs"/>, taken alternately with them).
        /// </summary>
        public static double[] AgainstRawAround(IReadOnlyList<(double Bytes, double Seconds)> syncs, IReadOnlyList<double> raws) =>
            raws.Count != syncs.Count + 1
                ? throw new ArgumentException($"{syncs.Count} syncs need {syncs.Count + 1} raw streams around them, not {raws.Count}.", nameof(raws))
                : [.. syncs.Select((s, i) => s.Bytes / s.Seconds / ((raws[i] + raws[i + 1]) / 2))];
    }

    /// <summary>
    /// One sync to three generator silos over one (medians), and bare TCP relayed the same way (<see cref="HostFloors.Relay"/>).
    /// Taken in rounds (a sync to one silo, one to three, a relay pair, one after the other): <see cref="OverFloor"/> is
    /// the median of each round's ratio over that round's own floor (<paramref name="RoundsOverFloor"/>).
    /// </summary>
    internal sealed record Broadcast(double OneSeconds, double ThreeSeconds, int Silos, RelayFloor Floor, double[]? RoundsOverFloor = null)
    {
        public double Ratio => Over(ThreeSeconds, OneSeconds);
        public double OverFloor => RoundsOverFloor is { Length: > 0 } r ? BenchSupport.Middle(r) : Over(Ratio, Floor.Ratio);

        /// <summary>What each sync costs beyond bare TCP moving the same bytes the same way (medians).</summary>
        public string Finding => Ratio <= 0 || Floor.Ratio <= 0 ? "" :
            $"a sync to one silo takes {1000 * (OneSeconds - Floor.OneHopSeconds):F0} ms beyond one bare TCP hop, to three " +
            $"{1000 * (ThreeSeconds - Floor.ThreeHopSeconds):F0} ms beyond the bare relay: each silo's digest of its copy and the chain's join calls, " +
            "on the same cores as the copies";

        /// <summary>The figures of rounds of (sync to one, sync to three, relay over one hop, over three), in seconds.</summary>
        public static Broadcast FromRounds(IReadOnlyList<(double One, double Three, double FloorOne, double FloorThree)> rounds, int silos) =>
            rounds.Count == 0 ? new Broadcast(0, 0, silos, new RelayFloor(0, 0, 0)) : new Broadcast(
                BenchSupport.Middle(rounds.Select(r => r.One)), BenchSupport.Middle(rounds.Select(r => r.Three)), silos,
                new RelayFloor(BenchSupport.Middle(rounds.Select(r => r.FloorThree / r.FloorOne)), BenchSupport.Middle(rounds.Select(r => r.FloorOne)),
                    BenchSupport.Middle(rounds.Select(r => r.FloorThree))),
                [.. rounds.Select(r => r.Three / r.One / (r.FloorThree / r.FloorOne))]);
    }

    /// <summary>Bare TCP relayed over three hops ÷ one (<see cref="HostFloors.Relay"/>), with the two medians' seconds.</summary>
    internal sealed record RelayFloor(double Ratio, double OneHopSeconds, double ThreeHopSeconds);

    /// <summary>
    /// The generation phase on one generator silo and on two (medians from step 3), and the host's floors for their ratio: a
    /// CPU-bound loop's (<see cref="HostFloors.Spin"/>) and the same rollouts' in this process (<see cref="HostFloors.Generation"/>).
    /// The phase holds each step's weight sync (medians of the slowest generator's fetch), which the floor does not have.
    /// </summary>
    internal sealed record Scale(double OneSiloSeconds, double TwoSilosSeconds, double HostParallelFloor, double GenerationParallelFloor,
        double OneSiloSyncSeconds = 0, double TwoSilosSyncSeconds = 0)
    {
        public double Ratio => Over(TwoSilosSeconds, OneSiloSeconds);
        public double OverFloor => Over(Ratio, GenerationParallelFloor);

        /// <summary>Two silos ÷ one without the weight sync: the sampling alone, as the floor measures it.</summary>
        public double SamplingRatio => Over(TwoSilosSeconds - TwoSilosSyncSeconds, OneSiloSeconds - OneSiloSyncSeconds);

        /// <summary>How much of the gap to the floor is the weight sync, and how much the sampling itself.</summary>
        public string Finding => Ratio <= 0 ? "" :
            $"weight sync {OneSiloSyncSeconds:F3} s of the phase on one silo, {TwoSilosSyncSeconds:F3} s on two (the second silo's copy is relayed); " +
            $"sampling alone 2 ÷ 1 = {SamplingRatio:F3}, {Over(SamplingRatio, GenerationParallelFloor):F2}× the floor";
    }

    /// <summary>
    /// The same RefAlign steps in sync and in pipelined mode on a learner silo and a generator silo (medians without
    /// each run's first step); per phase, the sync then the pipelined median.
    /// </summary>
    /// <remarks><paramref name="HostParallelFloor"/>: <see cref="HostFloors.Spin"/> right after the runs (0.5 on two free cores).</remarks>
    internal sealed record Pipelining(double SyncStepSeconds, double PipelinedStepSeconds, IReadOnlyDictionary<string, double[]> PhaseSeconds,
        double HostParallelFloor = 0)
    {
        public double Speedup => Over(SyncStepSeconds, PipelinedStepSeconds);

        double Phase(string name, int mode) => PhaseSeconds.TryGetValue(name, out var s) ? s[mode] : 0;

        /// <summary>
        /// The most one-step-off can give here: a sync step ÷ the longer of its generation and the rest (scoring and
        /// learning run on the learner silo's core while the generator silo's samples the next step).
        /// </summary>
        public double Bound => Over(SyncStepSeconds, Math.Max(Phase("generate", 0), SyncStepSeconds - Phase("generate", 0)));

        /// <summary>Which phase a pipelined step waits on, from the phases' medians in both modes.</summary>
        public string Finding
        {
            get
            {
                if (SyncStepSeconds <= 0 || PipelinedStepSeconds <= 0) return "";
                var (generate, rest) = (Phase("generate", 0), SyncStepSeconds - Phase("generate", 0));
                var waited = Phase("generate", 1);
                var slowed = Over(PipelinedStepSeconds - waited, rest);
                var side = generate > rest
                    ? $"generation ({generate:F3} s) is longer than scoring + learning ({rest:F3} s), so a pipelined step still waits {waited:F3} s on the generator"
                    : $"scoring + learning ({rest:F3} s) is the longer side: a pipelined step waits {waited:F3} s on the generator";
                return $"{side}; bound {Bound:F2}; scoring + learning took {slowed:F2}× their sync time beside sampling (the two silos share the host's cores: " +
                    $"two threads ÷ one, halved, {HostParallelFloor:F2} here, 0.5 on two free cores)";
            }
        }
    }
}
