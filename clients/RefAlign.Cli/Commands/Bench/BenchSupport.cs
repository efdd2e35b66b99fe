using System.CommandLine;
using System.Diagnostics;
using RefAlign.Client;
using RefAlign.Compute.Models;
using Spectre.Console;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands.Bench;

/// <summary><c>refalign bench</c> and what its suites share: timing, the matmul peak, a figures table.</summary>
internal static class BenchSupport
{
    public static Command Create()
    {
        var bench = new Command("bench", "Measure throughput on this machine (each suite prints its figures; --json for scripts, --out to keep a result file).")
        {
            DeviceOption, OutOption,
        };
        bench.Subcommands.Add(GenerationBench.Create());
        bench.Subcommands.Add(BertScoreBench.Create());
        bench.Subcommands.Add(LearnerBench.Create());
        bench.Subcommands.Add(ClusterBench.Create());
        bench.Subcommands.Add(BenchReport.Create());
        return bench;
    }

    /// <summary><c>bench … --out FILE</c>: the result also goes to a result file, with when and where it was measured.</summary>
    public static Option<string?> OutOption { get; } = new("--out")
    {
        Description = "Also write the result as a JSON result file (docs/benchmarks.md is rendered from such files by `bench report`).",
        Recursive = true,
    };

    /// <summary>Prints a suite's result (JSON with <c>--json</c>) and, with <c>--out</c>, keeps it as a result file.</summary>
    public static void Emit<T>(ParseResult r, string suite, T result, bool json, Action print)
    {
        if (json) CliSupport.WriteJson(result);
        else print();
        if (r.GetValue(OutOption) is { Length: > 0 } path) BenchReport.WriteResultFile(path, suite, result);
    }

    /// <summary><c>bench --device</c>: every suite's tensors are created there (the default device of new tensors).</summary>
    public static Option<string> DeviceOption { get; } = WithRecursion(CliSupport.DeviceOption());

    static Option<string> WithRecursion(Option<string> o)
    {
        o.Recursive = true;
        return o;
    }

    static bool s_synchronize;

    /// <summary>Checks the <c>--device</c> and makes it the default of new tensors; CUDA timings then wait for the device.</summary>
    public static void UseDevice(ParseResult r)
    {
        var device = CliSupport.Device(r.GetValue(DeviceOption)!);
        set_default_device(device);
        s_synchronize = device.type == TorchSharp.DeviceType.CUDA;
    }

    public static void Step(bool quiet, string label, Action a) => CliSupport.Status(quiet, $"bench: {label}", a);

    /// <summary>
    /// Runs <paramref name="work"/> in a fresh temporary folder, removed after a success. After a failure it stays and
    /// stderr names it: the silo logs an error points to are in it.
    /// </summary>
    public static async Task<T> InWorkFolderAsync<T>(string prefix, Func<string, Task<T>> work)
    {
        var dir = Directory.CreateTempSubdirectory(prefix).FullName;
        T result;
        try { result = await work(dir); }
        catch
        {
            Console.Error.WriteLine($"bench: kept {dir} (models, data and silo logs) for the error below");
            throw;
        }
        Directory.Delete(dir, recursive: true);
        return result;
    }

    /// <summary>The fastest of <paramref name="runs"/> timings of <paramref name="a"/>: on a shared machine the others carry its load.</summary>
    public static double Best(int runs, Action a) => Enumerable.Range(0, runs).Min(_ => Time(a));

    public static double Time(Action a)
    {
        var sw = Stopwatch.StartNew();
        a();
        // Kernels run asynchronously on a GPU: only a synchronize makes the time the work's.
        if (s_synchronize) cuda.synchronize();
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// The actions taken in turn, <paramref name="runs"/> rounds after one warm-up round: each one's median time, and the
    /// median over rounds of each one's time ÷ the first one's in the same round. Alternating puts a noisy host's slow
    /// spells on every action alike, which timing one action's runs after the other's does not.
    /// </summary>
    public static (double[] Medians, double[] RatiosToFirst) Interleaved(int runs, params Action[] actions)
    {
        foreach (var a in actions) a();
        var rounds = Enumerable.Range(0, runs).Select(_ => actions.Select(Time).ToArray()).ToArray();
        return ([.. actions.Select((_, i) => Middle(rounds.Select(r => r[i])))],
            [.. actions.Select((_, i) => Middle(rounds.Select(r => r[i] / r[0])))]);
    }

    /// <summary>Median of <paramref name="runs"/> timings after one warm-up run.</summary>
    public static double Median(int runs, Action a)
    {
        a();
        return Middle(Enumerable.Range(0, runs).Select(_ => Time(a)));
    }

    /// <summary>The median of <paramref name="values"/>: the upper of the two middle ones for an even count.</summary>
    public static double Middle(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    /// <summary>Best of the GEMM shapes a training step of this model runs (projection, MLP, LM head).</summary>
    public static double MatmulFlops(CausalLmConfig c, int tokens)
    {
        using var peak = MatmulPeak.Best(c, tokens);
        return peak.FlopsPerSecond;
    }

    /// <summary>
    /// The GEMM shape of a training step (projection, MLP or LM head) that runs fastest here, kept so that it can be timed
    /// again beside the steps it is compared with (<see cref="Run"/>: <see cref="Reps"/> products of that shape).
    /// </summary>
    public sealed class MatmulPeak : IDisposable
    {
        public const int Reps = 10;
        readonly Tensor _a, _b;

        MatmulPeak(Tensor a, Tensor b) => (_a, _b) = (a, b);

        /// <summary>The FLOP/s measured when the shape was chosen.</summary>
        public double FlopsPerSecond { get; private set; }

        /// <summary>FLOPs of one <see cref="Run"/>.</summary>
        public double FlopsPerRun => 2.0 * _a.shape[0] * _a.shape[1] * _b.shape[1] * Reps;

        public void Run()
        {
            using var _ = no_grad();
            for (var i = 0; i < Reps; i++) matmul(_a, _b).Dispose();
        }

        public static MatmulPeak Best(CausalLmConfig c, int tokens)
        {
            (long K, long N)[] shapes = [(c.HiddenSize, c.HiddenSize), (c.HiddenSize, c.IntermediateSize), (c.HiddenSize, c.VocabSize)];
            MatmulPeak? best = null;
            foreach (var (k, n) in shapes)
            {
                MatmulPeak? shape = new(randn(tokens, k), randn(k, n));
                shape.Run(); // warm-up
                shape.FlopsPerSecond = shape.FlopsPerRun / Time(shape.Run);
                if (best is null || shape.FlopsPerSecond > best.FlopsPerSecond) (best, shape) = (shape, best);
                shape?.Dispose();
            }
            return best!;
        }

        public void Dispose()
        {
            _a.Dispose();
            _b.Dispose();
        }
    }

    /// <summary>Dense FLOPs of one forward pass per token (all projections and the LM head), without attention scores.</summary>
    public static double ForwardFlopsPerToken(CausalLmConfig c)
    {
        double attnWidth = c.NumAttentionHeads * c.HeadDim, kvWidth = c.NumKeyValueHeads * c.HeadDim;
        var perLayer = c.HiddenSize * (2 * attnWidth + 2 * kvWidth) + (c.IsGptNeoX ? 2.0 : 3.0) * c.HiddenSize * c.IntermediateSize;
        return 2 * (c.NumHiddenLayers * perLayer + (double)c.HiddenSize * c.VocabSize);
    }

    /// <summary>Attention score and mixing FLOPs (QKᵀ and AV) of one forward pass over <paramref name="rows"/> × <paramref name="seq"/>.</summary>
    public static double AttentionFlops(CausalLmConfig c, int rows, int seq) =>
        c.NumHiddenLayers * 4.0 * rows * seq * (double)seq * c.NumAttentionHeads * c.HeadDim;

    public static void Print(string title, IEnumerable<(string Figure, string Value)> rows)
    {
        var t = new Table().Title(title).AddColumns("figure", "value");
        foreach (var (f, v) in rows) t.AddRow(Markup.Escape(f), Markup.Escape(v));
        AnsiConsole.Write(t);
    }

    /// <summary>Waits, a minute at most, until <paramref name="count"/> generator-role silos are active.</summary>
    internal static async Task WaitForGeneratorsAsync(RefAlignClient client, int count, CancellationToken ct)
    {
        for (var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1); ; await Task.Delay(250, ct))
        {
            var c = await client.GetClusterAsync(ct);
            if (c.Silos.Count(s => s.Status == "Active" && s.Roles.Contains("generator")) >= count) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"fewer than {count} generator silos joined within a minute.");
        }
    }

    /// <summary>Fails the bench unless run <paramref name="id"/> completed: figures from a failed run mean nothing.</summary>
    internal static async Task EnsureCompletedAsync(RefAlignClient client, string id, string what, CancellationToken ct)
    {
        var run = await client.GetRunAsync(id, ct);
        if (run.Status != RunStatus.Completed) throw new InvalidOperationException($"{what} run ended {run.Status}: {run.Error}");
    }
}
