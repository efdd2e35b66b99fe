using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tests.Oracle;
using TorchSharp;
using static RefAlign.Compute.Tests.ReferenceForwardTests;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// GPTNeoXForCausalLM (TorchSharp, float32) against the double-precision <see cref="ReferenceGptNeoX"/>, on small random
/// models saved to and loaded back from an HF folder: parallel and sequential residual, partial rotary, exact and tanh
/// GELU, left-padded rows and the KV cache. Weights are drawn large (initializer_range 0.25, random LayerNorm weights
/// and biases) so every parameter visibly moves the logits.
/// </summary>
public sealed class GptNeoXForwardTests : IDisposable
{
    const double Tolerance = 1e-5;
    readonly string _root = Directory.CreateTempSubdirectory("refalign-neox-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    internal static CausalLmConfig Small(bool parallel = true) => new()
    {
        Architecture = CausalLmConfig.GptNeoXArchitecture,
        VocabSize = 97,
        HiddenSize = 32,
        IntermediateSize = 64,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 4,
        HeadDim = 8,
        RotaryPct = 0.5,
        UseParallelResidual = parallel,
        HiddenAct = "gelu",
        LayerNormEps = 1e-5,
        QkvBias = true,
        OutputBias = true,
        MlpBias = true,
        InitializerRange = 0.25,
        MaxPositionEmbeddings = 64,
        BosTokenId = 0,
        EosTokenIds = [0],
    };

    (CausalLm Model, ReferenceGptNeoX Oracle, Dictionary<string, double[]> Weights) Create(CausalLmConfig cfg, long seed)
    {
        var dir = Path.Combine(_root, $"m{seed}");
        using (var m = new CausalLm(cfg))
        {
            m.InitializeWeights(seed);
            RandomiseNormsAndBiases(m, seed + 1000);
            m.SavePretrained(dir);
        }
        var weights = ReferenceDecoder.ReadWeights(dir);
        return (CausalLm.FromPretrained(dir), new ReferenceGptNeoX(cfg, weights), weights);
    }

    [Theory]
    [InlineData(true, "gelu", false)]
    [InlineData(false, "gelu", false)]
    [InlineData(true, "gelu_new", true)]
    [InlineData(false, "gelu_fast", true)]
    public void LogitsMatchOracle(bool parallel, string act, bool tied)
    {
        var cfg = Small(parallel) with { HiddenAct = act, TieWordEmbeddings = tied };
        var (model, oracle, weights) = Create(cfg, seed: parallel ? 21 : 22);
        using var _ = model;
        Assert.Equal(tied, !weights.ContainsKey("embed_out.weight"));
        var ids = Tokens(11, 97, seed: 1);
        AssertClose(oracle.Logits(ids), ModelLogits(model, ids), 0, "full sequence");
    }

    [Fact]
    public void OracleFaultsForPartialRotaryAndQkvLayoutDisagree()
    {
        // The comparison must be able to fail: rotating every dim or splitting q/k/v blockwise is far off.
        var (model, oracle, weights) = Create(Small(), seed: 23);
        using var _ = model;
        var ids = Tokens(10, 97, seed: 2);
        var actual = ModelLogits(model, ids);
        foreach (var fault in new[] { new NeoXOracleFaults { FullRotary = true }, new NeoXOracleFaults { BlockedQkv = true } })
        {
            var diff = MaxAbsDiff(new ReferenceGptNeoX(model.Config, weights, fault).Logits(ids), actual, 0);
            Assert.True(diff > 1e-3, $"{fault} agreed with the model (max |diff| {diff:E2}).");
        }
        // Parallel and sequential residual must differ as well, or the two cases prove nothing apart.
        var sequential = new ReferenceGptNeoX(model.Config with { UseParallelResidual = false }, weights);
        Assert.True(MaxAbsDiff(sequential.Logits(ids), actual, 0) > 1e-3);
        AssertClose(oracle.Logits(ids), actual, 0, "model");
    }

    [Fact]
    public void ErfSeriesMatchesKnownValues()
    {
        Assert.Equal(0.8427007929497149, ReferenceGptNeoX.Erf(1), 12);
        Assert.Equal(-0.9953222650189527, ReferenceGptNeoX.Erf(-2), 12);
        Assert.Equal(0.9999779095030014, ReferenceGptNeoX.Erf(3), 12);
        Assert.Equal(0.1124629160182849, ReferenceGptNeoX.Erf(0.1), 12);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LeftPaddedBatchRowsMatchOracle(bool parallel)
    {
        var (model, oracle, _) = Create(Small(parallel), seed: 24);
        using var m = model;
        var longIds = Tokens(12, 97, seed: 3);
        var shortIds = Tokens(7, 97, seed: 4);
        var pad = longIds.Length - shortIds.Length;
        using var _ = no_grad();
        using var x = tensor([.. longIds.Select(i => (long)i), .. Enumerable.Repeat(1L, pad), .. shortIds.Select(i => (long)i)], 2, 12);
        using var mask = tensor([.. Enumerable.Repeat(1L, 12), .. Enumerable.Repeat(0L, pad), .. Enumerable.Repeat(1L, shortIds.Length)], 2, 12);
        using var logits = model.Forward(x, mask);
        AssertClose(oracle.Logits(longIds), ToRows(logits, 0), 0, "unpadded row");
        AssertClose(oracle.Logits(shortIds), ToRows(logits, 1, skip: pad), 0, "left-padded row");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void KvCacheIncrementalDecodeMatchesFullForwardAndOracle(bool parallel)
    {
        var (model, oracle, _) = Create(Small(parallel), seed: 25);
        using var m = model;
        var ids = Tokens(12, 97, seed: 5);
        var expected = oracle.Logits(ids);
        var full = ModelLogits(model, ids);
        using var _ = no_grad();
        using var cache = model.NewCache(1, ids.Length);
        const int prefill = 5;
        using (var x = IdTensor(ids[..prefill]))
        using (var mask = ones(1, prefill, ScalarType.Int64))
        using (var logits = model.Forward(x, mask, cache))
            AssertClose(expected, ToRows(logits, 0), 0, "prefill");
        for (var p = prefill; p < ids.Length; p++)
        {
            using var x = IdTensor([ids[p]]);
            using var mask = ones(1, p + 1, ScalarType.Int64);
            using var logits = model.Forward(x, mask, cache, lastOnly: true);
            AssertClose(full, ToRows(logits, 0), p, $"decode step {p} vs full forward");
            AssertClose(expected, ToRows(logits, 0), p, $"decode step {p} vs oracle");
        }
    }

    [Fact]
    public void CachedGenerationOfLeftPaddedBatchEqualsRecomputation()
    {
        var (model, _, _) = Create(Small(), seed: 26);
        using var m = model;
        int[][] prompts = [[0, 5, 9, 11, 3], [0, 7], [0, 40, 41, 42, 43, 44, 45]];
        var opts = new SamplingOptions { MaxNewTokens = 10, Temperature = 0 };
        var cached = new List<float[]>();
        var full = new List<float[]>();
        var a = TextGenerator.Generate(model, prompts, opts, [], padId: 1, useCache: true,
            onStepLogits: (_, l) => cached.Add(l.data<float>().ToArray()));
        var b = TextGenerator.Generate(model, prompts, opts, [], padId: 1, useCache: false,
            onStepLogits: (_, l) => full.Add(l.data<float>().ToArray()));
        Assert.Equal(10, cached.Count);
        for (var s = 0; s < cached.Count; s++)
            Assert.True(cached[s].Zip(full[s]).Max(t => Math.Abs(t.First - t.Second)) <= 1e-4, $"step {s}");
        for (var r = 0; r < a.Count; r++) Assert.Equal(a[r].TokenIds, b[r].TokenIds);
    }

    // ---- helpers ----

    // Tokens, IdTensor, ToRows and RandomiseNormsAndBiases: the decoder oracle tests' (ReferenceForwardTests).

    static double[,] ModelLogits(CausalLm model, int[] ids)
    {
        using var _ = no_grad();
        using var x = IdTensor(ids);
        using var logits = model.Forward(x);
        return ToRows(logits, 0);
    }

    /// <summary>Max |expected[first + i, j] − actual[i, j]| over the rows of <paramref name="actual"/>.</summary>
    static double MaxAbsDiff(double[,] expected, double[,] actual, int firstPosition)
    {
        Assert.Equal(expected.GetLength(1), actual.GetLength(1));
        double max = 0;
        for (var i = 0; i < actual.GetLength(0); i++)
            for (var j = 0; j < actual.GetLength(1); j++)
                max = Math.Max(max, Math.Abs(expected[firstPosition + i, j] - actual[i, j]));
        return max;
    }

    static void AssertClose(double[,] expected, double[,] actual, int firstPosition, string what)
    {
        var max = MaxAbsDiff(expected, actual, firstPosition);
        Assert.True(max <= Tolerance, $"{what}: max |logit diff| {max:E3} exceeds {Tolerance:E0}.");
    }
}
