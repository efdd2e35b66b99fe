using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// What this host allows at best for a cluster figure, measured beside it in the same run with no grain, call or silo:
/// two generator silos over one (<c>generate_2_silos_vs_1</c>: the host's cores running the same work on two threads at
/// once ÷ on one), and a relayed weight broadcast to three silos over one (<c>broadcast_3_vs_1</c>: bare sockets).
/// </summary>
internal static class HostFloors
{
    /// <summary>
    /// A fixed CPU-bound loop on two threads at once ÷ on one, halved (median of 3). 0.5 where two cores are free; more
    /// on a host whose cores are shared with other work. It touches no memory, so it does not see two cores competing
    /// for caches and memory bandwidth, which sampling does (see <see cref="Generation"/>).
    /// </summary>
    public static double Spin()
    {
        static ulong Loop(long n)
        {
            var x = 88172645463325252UL;
            for (var i = 0L; i < n; i++)
            {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            return x;
        }
        static double Seconds(int threads, long n)
        {
            var sink = new ulong[threads];
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() => sink[t] = Loop(n))).ToList();
            var started = Stopwatch.GetTimestamp();
            workers.ForEach(w => w.Start());
            workers.ForEach(w => w.Join());
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            return sink.Contains(0UL) ? double.NaN : seconds; // the loop's result is used, so it is not optimized away
        }
        const long Work = 400_000_000;
        Seconds(1, Work / 20);
        return BenchSupport.Middle(Enumerable.Range(0, 3).Select(_ => Seconds(2, Work) / Seconds(1, Work) / 2));
    }

    /// <summary>
    /// The scale-out part's own rollouts, in this process: the two shards of a batch sampled by two policy copies on
    /// two threads at once (as two generator silos do, one libtorch thread each) ÷ both shards one after the other on
    /// one thread (as one silo does). Median of 3 batches after a warm-up one. Above 0.5 by what the two cores lose
    /// running the decoder side by side (shared caches and memory bandwidth), which <see cref="Spin"/> cannot show.
    /// </summary>
    public static double Generation(RunConfig config, TextTokenizer tokenizer, TrainingData data)
    {
        var previous = get_num_threads();
        try
        {
            // The threads below start after this, so each runs libtorch on one thread (its value at their first op).
            set_num_threads(1);
            CausalLm Load() => CausalLm.FromPretrained(config.Policy.Model, config.Policy.Dtype.ToScalarType(), CPU);
            using CausalLm first = Load(), second = Load();
            var (eos, pad) = PolicySetup.SpecialIds(tokenizer, first);
            var half = (config.BatchSize + 1) / 2;
            double Shard(CausalLm policy, int step, int shard)
            {
                var prompts = data.BatchIndices(step, config.BatchSize, config.Seed, config.Data.Shuffle).Select(i => data.TrainPrompts[i]).ToList();
                List<int> positions = [.. Enumerable.Range(shard * half, Math.Min(half, prompts.Count - shard * half))];
                var started = Stopwatch.GetTimestamp();
                RolloutWorker.Generate(policy, ids => tokenizer.Decode(ids), [.. positions.Select(i => prompts[i])], positions, config.RefAlign, config.Seed, step, eos, pad);
                return Stopwatch.GetElapsedTime(started).TotalSeconds;
            }
            double OnThreads(params Func<double>[] work)
            {
                var seconds = new double[work.Length];
                var threads = work.Select((w, i) => new Thread(() => seconds[i] = w())).ToList();
                threads.ForEach(t => t.Start());
                threads.ForEach(t => t.Join());
                return seconds.Max();
            }
            OnThreads(() => Shard(first, 0, 0), () => Shard(second, 0, 1));
            return BenchSupport.Middle(Enumerable.Range(1, 3).Select(step =>
            {
                var one = OnThreads(() => Shard(first, step, 0) + Shard(first, step, 1));
                var two = OnThreads(() => Shard(first, step, 0), () => Shard(second, step, 1));
                return two / one;
            }));
        }
        finally { set_num_threads(previous); }
    }

    /// <summary>
    /// Bare loopback TCP relayed over three hops (source → 1 → 2 → 3, each relay receiving into its own reused buffer and
    /// forwarding every slice as it lands, as the weight relay does) ÷ one hop (source → 1), for <paramref name="bytes"/>
    /// bytes; median of 5 pairs after a warm-up pair (<see cref="RelayChain"/>). About 1 where each hop has its own cores
    /// and link; on a host whose loopback copies already fill the cores, each hop adds its receive and send copies to the
    /// same cores.
    /// </summary>
    public static async Task<(double Ratio, double OneHopSeconds, double ThreeHopSeconds)> Relay(int bytes, CancellationToken ct)
    {
        var chain = new RelayChain(bytes);
        await chain.PairAsync(ct);
        var pairs = new List<(double One, double Three)>();
        for (var i = 0; i < 5; i++) pairs.Add(await chain.PairAsync(ct));
        return (BenchSupport.Middle(pairs.Select(p => p.Three / p.One)), BenchSupport.Middle(pairs.Select(p => p.One)),
            BenchSupport.Middle(pairs.Select(p => p.Three)));
    }

    /// <summary>A source and three relay buffers of one size, allocated and touched once, for pairs taken whenever needed.</summary>
    public sealed class RelayChain
    {
        readonly byte[] _source;
        readonly byte[][] _hops;

        public RelayChain(int bytes)
        {
            _source = new byte[bytes];
            Random.Shared.NextBytes(_source);
            _hops = [.. Enumerable.Range(0, 3).Select(_ => new byte[bytes])];
            foreach (var b in _hops) Array.Fill(b, (byte)1); // touched once, as a silo's reused weight buffers are
        }

        /// <summary>Seconds over one hop, then over three.</summary>
        public async Task<(double One, double Three)> PairAsync(CancellationToken ct) =>
            (await RelaySeconds(_source, _hops[..1], ct), await RelaySeconds(_source, _hops, ct));
    }

    /// <summary>Seconds from the source's first write until the last relay in the chain holds every byte.</summary>
    static async Task<double> RelaySeconds(byte[] source, byte[][] hops, CancellationToken ct)
    {
        // Socket buffer sizes are left to the kernel's autotuning, as the weight streams leave them.
        const int Slice = 8 << 20;
        // Link k carries hop k's input: its sending end belongs to the source (k = 0) or to hop k − 1.
        var links = new List<(TcpClient Sender, TcpClient Receiver)>();
        try
        {
            foreach (var _ in hops)
            {
                using var listener = new TcpListener(IPAddress.Loopback, 0);
                listener.Start();
                var sender = new TcpClient { NoDelay = true };
                var accepted = listener.AcceptTcpClientAsync(ct).AsTask();
                await sender.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port, ct);
                links.Add((sender, await accepted));
            }
            async Task Hop(int k)
            {
                var up = links[k].Receiver.GetStream();
                var down = k + 1 < hops.Length ? links[k + 1].Sender.GetStream() : null;
                var into = hops[k];
                var forwarded = Task.CompletedTask;
                for (var got = 0; got < into.Length;)
                {
                    var n = await up.ReadAsync(into.AsMemory(got, Math.Min(Slice, into.Length - got)), ct);
                    if (n == 0) throw new EndOfStreamException($"relay hop {k + 1} got {got} of {into.Length} bytes");
                    await forwarded; // one slice in flight downstream while the next one is read
                    if (down is not null) forwarded = down.WriteAsync(into.AsMemory(got, n), ct).AsTask();
                    got += n;
                }
                await forwarded;
            }
            var started = Stopwatch.GetTimestamp();
            var relays = Enumerable.Range(0, hops.Length).Select(k => Task.Run(() => Hop(k), ct)).ToArray();
            var first = links[0].Sender.GetStream();
            for (var at = 0; at < source.Length; at += Slice)
                await first.WriteAsync(source.AsMemory(at, Math.Min(Slice, source.Length - at)), ct);
            await Task.WhenAll(relays);
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            // A floor measured on bytes that did not arrive intact would be no floor.
            if (hops.FirstOrDefault(h => !h.AsSpan().SequenceEqual(source)) is { } wrong)
                throw new InvalidDataException($"relay hop {Array.IndexOf(hops, wrong) + 1} holds other bytes than were sent");
            return seconds;
        }
        finally
        {
            foreach (var (sender, receiver) in links)
            {
                sender.Dispose();
                receiver.Dispose();
            }
        }
    }
}
