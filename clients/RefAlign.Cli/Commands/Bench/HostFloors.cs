using System.Diagnostics;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// What two generator silos can gain over one on this host at best, measured beside <c>generate_2_silos_vs_1</c>:
/// no grain, call or weight sync, only the host's cores running the same work on two threads at once ÷ on one.
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
}
