using RefAlign.Compute.Models;
using RefAlign.Compute.Tests.Oracle;
using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// CausalLm (TorchSharp, float32) against the independent double-precision <see cref="ReferenceDecoder"/>, on small
/// random models saved to and loaded back from an HF folder. Weights are drawn large (initializer_range 0.25, random
/// norm weights and biases) so attention patterns, RoPE and every parameter visibly move the logits.
/// </summary>
public sealed class ReferenceForwardTests
{
    const double Tolerance = 1e-4;

    static CausalLmConfig Small(string arch) => new()
    {
        Architecture = arch,
        VocabSize = 97,
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 8,
        RmsNormEps = 1e-6,
        InitializerRange = 0.25,
    };

    [Fact]
    public void LlamaGroupedQueryMatchesOracle()
    {
        using var f = Fixture.Create(Small("LlamaForCausalLM"), seed: 11);
        f.AssertMatches(Tokens(10, 97, seed: 1));
    }

    [Fact]
    public void LlamaAllBiasesMatchesOracle()
    {
        var cfg = Small("LlamaForCausalLM") with { QkvBias = true, OutputBias = true, MlpBias = true };
        using var f = Fixture.Create(cfg, seed: 12);
        Assert.Contains("model.layers.1.self_attn.o_proj.bias", f.Weights.Keys);
        Assert.Contains("model.layers.1.mlp.down_proj.bias", f.Weights.Keys);
        f.AssertMatches(Tokens(9, 97, seed: 2));
    }

    [Fact]
    public void LlamaMultiQueryLlama3RopeScalingMatchesOracle()
    {
        var cfg = Small("LlamaForCausalLM") with
        {
            NumKeyValueHeads = 1,
            RopeTheta = 500000,
            RopeScaling = new RopeScaling("llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16),
        };
        using var f = Fixture.Create(cfg, seed: 13);

        // The scaling must actually change the frequencies and the logits, or this case proves nothing about it.
        var scaled = ReferenceDecoder.ComputeInverseFrequencies(cfg);
        var plain = ReferenceDecoder.ComputeInverseFrequencies(cfg, ignoreScaling: true);
        Assert.All(Enumerable.Range(0, scaled.Length), i => Assert.NotEqual(plain[i], scaled[i], 1e-9));
        var ids = Tokens(12, 97, seed: 3);
        var unscaledOracle = new ReferenceDecoder(cfg, f.Weights, new OracleFaults { IgnoreRopeScaling = true });
        Assert.True(MaxAbsDiff(f.Oracle.Logits(ids), unscaledOracle.Logits(ids)) > 1e-3, "llama3 scaling did not matter");

        f.AssertMatches(ids);
    }

    [Fact]
    public void Llama3InverseFrequenciesFollowTransformers()
    {
        // Hand-worked from _compute_llama3_parameters: theta 500000, d 8, old ctx 16, low 1 (wavelen 16), high 4 (wavelen 4).
        var cfg = Small("LlamaForCausalLM") with
        {
            RopeTheta = 500000,
            RopeScaling = new RopeScaling("llama3", 8, 1, 4, 16),
        };
        var inv = ReferenceDecoder.ComputeInverseFrequencies(cfg);
        var wavelen0 = 2 * Math.PI; // inv_freq[0] = 1 → medium band
        var smooth = (16 / wavelen0 - 1) / (4 - 1);
        Assert.Equal((1 - smooth) / 8 + smooth, inv[0], 12);
        for (var i = 1; i < 4; i++) Assert.Equal(Math.Pow(500000, -2.0 * i / 8) / 8, inv[i], 15); // long wavelengths: / factor
    }

    [Fact]
    public void Qwen2BiasesAndTiedEmbeddingsMatchOracle()
    {
        var cfg = Small("Qwen2ForCausalLM") with { QkvBias = true, TieWordEmbeddings = true };
        using var f = Fixture.Create(cfg, seed: 14);
        Assert.DoesNotContain("lm_head.weight", f.Weights.Keys);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", f.Weights.Keys);
        Assert.True(f.Weights["model.layers.0.self_attn.q_proj.bias"].Max(Math.Abs) > 0.1, "biases were not randomised");
        f.AssertMatches(Tokens(11, 97, seed: 4));
    }

    [Fact]
    public void MistralSlidingWindowMatchesOracle()
    {
        var cfg = Small("MistralForCausalLM") with { SlidingWindow = 4 };
        using var f = Fixture.Create(cfg, seed: 15);
        var ids = Tokens(12, 97, seed: 5);

        var fullOracle = new ReferenceDecoder(cfg, f.Weights, new OracleFaults { IgnoreSlidingWindow = true });
        Assert.True(MaxAbsDiff(f.Oracle.Logits(ids), fullOracle.Logits(ids)) > 1e-3, "the sliding window did not matter");

        f.AssertMatches(ids);
    }

    [Fact]
    public void MistralSlidingWindowKvCacheDecodeMatchesOracle()
    {
        var cfg = Small("MistralForCausalLM") with { SlidingWindow = 4 };
        using var f = Fixture.Create(cfg, seed: 16);
        var ids = Tokens(12, 97, seed: 6);
        var expected = f.Oracle.Logits(ids);

        using var _ = no_grad();
        using var cache = f.Model.NewCache(1, ids.Length);
        const int prefill = 5;
        using (var x = IdTensor(ids[..prefill]))
        using (var mask = ones(1, prefill, ScalarType.Int64))
        using (var logits = f.Model.Forward(x, mask, cache))
            AssertRowsMatch(expected, ToRows(logits, 0), firstPosition: 0, "prefill");
        for (var p = prefill; p < ids.Length; p++)
        {
            using var x = IdTensor([ids[p]]);
            using var mask = ones(1, p + 1, ScalarType.Int64);
            using var logits = f.Model.Forward(x, mask, cache);
            AssertRowsMatch(expected, ToRows(logits, 0), firstPosition: p, $"decode step {p}");
        }
    }

    [Fact]
    public void LlamaLeftPaddedBatchRowsMatchOracle()
    {
        using var f = Fixture.Create(Small("LlamaForCausalLM"), seed: 17);
        var longIds = Tokens(12, 97, seed: 7);
        var shortIds = Tokens(7, 97, seed: 8);
        var pad = 12 - shortIds.Length;
        long[] flat = [.. longIds.Select(i => (long)i), .. Enumerable.Repeat(0L, pad), .. shortIds.Select(i => (long)i)];
        long[] maskFlat = [.. Enumerable.Repeat(1L, 12), .. Enumerable.Repeat(0L, pad), .. Enumerable.Repeat(1L, shortIds.Length)];

        using var _ = no_grad();
        using var x = tensor(flat, 2, 12);
        using var mask = tensor(maskFlat, 2, 12);
        using var logits = f.Model.Forward(x, mask);
        AssertRowsMatch(f.Oracle.Logits(longIds), ToRows(logits, 0), 0, "unpadded row");
        AssertRowsMatch(f.Oracle.Logits(shortIds), ToRows(logits, 1, skip: pad), 0, "left-padded row");
    }

    [Fact]
    public void OracleWithInterleavedRotaryDisagrees()
    {
        // The comparison must be able to fail: an oracle with GPT-J style (adjacent-pair) rotation is far off.
        using var f = Fixture.Create(Small("LlamaForCausalLM"), seed: 18);
        var ids = Tokens(10, 97, seed: 9);
        var wrong = new ReferenceDecoder(f.Model.Config, f.Weights, new OracleFaults { InterleavedRotary = true });
        var diff = MaxAbsDiff(wrong.Logits(ids), f.ModelLogits(ids));
        Assert.True(diff > 1e-3, $"interleaved RoPE oracle agreed with the model (max |diff| {diff:E2}).");
        f.AssertMatches(ids);
    }

    // ---- helpers ----

    sealed class Fixture : IDisposable
    {
        readonly string _dir;

        Fixture(string dir, CausalLm model, ReferenceDecoder oracle, Dictionary<string, double[]> weights)
        {
            _dir = dir;
            Model = model;
            Oracle = oracle;
            Weights = weights;
        }

        public CausalLm Model { get; }
        public ReferenceDecoder Oracle { get; }
        public Dictionary<string, double[]> Weights { get; }

        /// <summary>Random model → save → load back; the oracle uses the in-code config and the saved tensors.</summary>
        public static Fixture Create(CausalLmConfig cfg, long seed)
        {
            var dir = Path.Combine(Path.GetTempPath(), $"refalign-oracle-{Guid.NewGuid():N}");
            try
            {
                using (var m = new CausalLm(cfg))
                {
                    m.InitializeWeights(seed);
                    RandomiseNormsAndBiases(m, seed + 1000);
                    m.SavePretrained(dir);
                }
                var model = CausalLm.FromPretrained(dir);
                var weights = ReferenceDecoder.ReadWeights(dir);
                return new Fixture(dir, model, new ReferenceDecoder(cfg, weights), weights);
            }
            catch
            {
                TryDelete(dir);
                throw;
            }
        }

        public double[,] ModelLogits(int[] ids)
        {
            using var _ = no_grad();
            using var x = IdTensor(ids);
            using var logits = Model.Forward(x);
            return ToRows(logits, 0);
        }

        public void AssertMatches(int[] ids)
        {
            var expected = Oracle.Logits(ids);
            var actual = ModelLogits(ids);
            Assert.Equal(expected.GetLength(0), actual.GetLength(0));
            Assert.Equal(Model.Config.VocabSize, actual.GetLength(1));
            var diff = MaxAbsDiff(expected, actual);
            Assert.True(diff <= Tolerance, $"max |logit diff| {diff:E3} exceeds {Tolerance:E0} ({Model.Config.Architecture}).");
        }

        public void Dispose()
        {
            Model.Dispose();
            TryDelete(_dir);
        }

        static void TryDelete(string dir)
        {
            try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Norm weights around 1 and nonzero biases, so a dropped weight or bias shows in the logits.</summary>
    internal static void RandomiseNormsAndBiases(CausalLm m, long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in m.named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                using var r = randn(p.shape, ScalarType.Float32, generator: gen);
                p.copy_(r * 0.3 + 1.0);
            }
            else if (name.EndsWith(".bias", StringComparison.Ordinal))
            {
                using var r = randn(p.shape, ScalarType.Float32, generator: gen);
                p.copy_(r * 0.5);
            }
        }
    }

    internal static int[] Tokens(int count, int vocab, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => rng.Next(vocab))];
    }

    internal static Tensor IdTensor(int[] ids) => tensor(ids.Select(i => (long)i).ToArray(), 1, ids.Length);

    /// <summary>Row <paramref name="batchIndex"/> of logits [B, T, V] as a double[T - skip, V], from position <paramref name="skip"/>.</summary>
    internal static double[,] ToRows(Tensor logits, int batchIndex, int skip = 0)
    {
        long t = logits.shape[1] - skip, v = logits.shape[2];
        using var row = logits[batchIndex].to(ScalarType.Float64).contiguous();
        var data = row.data<double>().ToArray();
        var result = new double[t, v];
        for (var i = 0; i < t; i++)
            for (var j = 0; j < v; j++)
                result[i, j] = data[(i + skip) * v + j];
        return result;
    }

    static void AssertRowsMatch(double[,] expected, double[,] actual, int firstPosition, string what)
    {
        var v = expected.GetLength(1);
        Assert.Equal(v, actual.GetLength(1));
        double max = 0;
        for (var i = 0; i < actual.GetLength(0); i++)
            for (var j = 0; j < v; j++)
                max = Math.Max(max, Math.Abs(expected[firstPosition + i, j] - actual[i, j]));
        Assert.True(max <= Tolerance, $"{what}: max |logit diff| {max:E3} exceeds {Tolerance:E0}.");
    }

    static double MaxAbsDiff(double[,] a, double[,] b)
    {
        Assert.Equal(a.GetLength(0), b.GetLength(0));
        Assert.Equal(a.GetLength(1), b.GetLength(1));
        double max = 0;
        for (var i = 0; i < a.GetLength(0); i++)
            for (var j = 0; j < a.GetLength(1); j++)
                max = Math.Max(max, Math.Abs(a[i, j] - b[i, j]));
        return max;
    }
}
