using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;
using RefAlign.Compute.Scoring;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

public sealed class DecodingTests
{
    [Theory]
    [InlineData("LlamaForCausalLM")]
    [InlineData("Qwen2ForCausalLM")]
    [InlineData("MistralForCausalLM")]
    public void KvCacheLogitsEqualFullRecomputationAtEveryStep(string arch)
    {
        var cfg = TinyModels.Llama() with
        {
            Architecture = arch,
            QkvBias = arch == "Qwen2ForCausalLM",
            TieWordEmbeddings = arch == "Qwen2ForCausalLM",
            SlidingWindow = arch == "MistralForCausalLM" ? 5 : null,
        };
        using var model = TinyModels.Create(cfg);
        int[][] prompts = [[1, 5, 9, 11, 3], [1, 7], [1, 40, 41, 42, 43, 44, 45]];
        var opts = new SamplingOptions { MaxNewTokens = 12, Temperature = 0 };
        var cached = new List<float[]>();
        var full = new List<float[]>();
        var a = TextGenerator.Generate(model, prompts, opts, [], padId: 0, useCache: true,
            onStepLogits: (_, l) => cached.Add(l.data<float>().ToArray()));
        var b = TextGenerator.Generate(model, prompts, opts, [], padId: 0, useCache: false,
            onStepLogits: (_, l) => full.Add(l.data<float>().ToArray()));
        Assert.Equal(12, cached.Count);
        Assert.Equal(cached.Count, full.Count);
        for (var s = 0; s < cached.Count; s++)
            for (var i = 0; i < cached[s].Length; i++)
                Assert.True(Math.Abs(cached[s][i] - full[s][i]) <= 1e-4, $"step {s} index {i}: {cached[s][i]} vs {full[s][i]}");
        for (var r = 0; r < a.Count; r++) Assert.Equal(a[r].TokenIds, b[r].TokenIds);
    }

    [Fact]
    public void LeftPaddedBatchGivesSameLogProbsAsEachSequenceAlone()
    {
        using var model = TinyModels.Create();
        (int[], int[])[] rows = [([1, 4, 5, 6, 7, 8], [9, 10, 2]), ([1, 3], [11, 12, 13, 14, 2]), ([1, 20, 21, 22], [23])];
        using var _ = no_grad();
        using var batched = SequenceLogProbs.Compute(model, SequenceCollator.Collate(rows, 0, PaddingSide.Left));
        using var right = SequenceLogProbs.Compute(model, SequenceCollator.Collate(rows, 0, PaddingSide.Right));
        for (var i = 0; i < rows.Length; i++)
        {
            using var alone = SequenceLogProbs.Compute(model, SequenceCollator.Collate([rows[i]], 0, PaddingSide.Left));
            var expected = alone.Sum[0].item<float>();
            Assert.InRange(batched.Sum[i].item<float>() - expected, -1e-5, 1e-5);
            Assert.InRange(right.Sum[i].item<float>() - expected, -1e-5, 1e-5);
            Assert.InRange(batched.Mean[i].item<float>() - expected / rows[i].Item2.Length, -1e-5, 1e-5);
        }
    }

    [Fact]
    public void SequenceLogProbIsSumOfNextTokenLogSoftmax()
    {
        using var model = TinyModels.Create();
        int[] prompt = [1, 4, 5], completion = [6, 7, 2];
        using var _ = no_grad();
        using var r = SequenceLogProbs.Compute(model, SequenceCollator.Collate([(prompt, completion)], 0, PaddingSide.Left));
        using var logits = model.Forward(tensor(new long[] { 1, 4, 5, 6, 7, 2 }, [1, 6]));
        var logp = logits[0].log_softmax(-1);
        double expected = 0;
        for (var t = 3; t < 6; t++) expected += logp[t - 1, new long[] { 1, 4, 5, 6, 7, 2 }[t]].item<float>();
        Assert.Equal(expected, r.Sum[0].item<float>(), 5);
        Assert.Equal(expected / 3, r.Mean[0].item<float>(), 5);
    }

    [Fact]
    public void CollationMatchesTrlVector()
    {
        var b = SequenceCollator.ConcatenatedPreference([[1, 2, 3], [7, 8]], [[4, 5], [9, 10]], [[6], [11, 12, 13]], padId: 0);
        long[][] ids = [[1, 2, 3, 4, 5], [7, 8, 9, 10, 0], [1, 2, 3, 6, 0], [7, 8, 11, 12, 13]];
        long[][] mask = [[0, 0, 0, 1, 1], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 1, 1, 1]];
        Assert.Equal(ids, b.InputIdRows);
        Assert.Equal(mask, b.CompletionMaskRows);
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndSeedsDiffer()
    {
        using var model = TinyModels.Create();
        int[][] prompts = [[1, 5, 9], [1, 7]];
        var opts = new SamplingOptions { MaxNewTokens = 16, Temperature = 1.0, TopP = 0.95, NumSamples = 3, Seed = 42 };
        var a = TextGenerator.Generate(model, prompts, opts, [2], padId: 0);
        var b = TextGenerator.Generate(model, prompts, opts, [2], padId: 0);
        var c = TextGenerator.Generate(model, prompts, opts with { Seed = 43 }, [2], padId: 0);
        Assert.Equal(6, a.Count);
        Assert.Equal(a.Select(x => x.TokenIds), b.Select(x => x.TokenIds));
        Assert.Equal(a.Select(x => x.TokenLogProbs), b.Select(x => x.TokenLogProbs));
        Assert.NotEqual(a.Select(x => string.Join(",", x.TokenIds)), c.Select(x => string.Join(",", x.TokenIds)));
        // The K samples of one prompt are distinct draws, not copies.
        Assert.True(a.Where(x => x.PromptIndex == 0).Select(x => string.Join(",", x.TokenIds)).Distinct().Count() > 1);
    }

    [Fact]
    public void SampledTokenLogProbsEqualTeacherForcedLogProbs()
    {
        using var model = TinyModels.Create();
        int[] prompt = [1, 5, 9, 13];
        var g = TextGenerator.Generate(model, [prompt], new SamplingOptions { MaxNewTokens = 10, Seed = 3 }, [2], padId: 0)[0];
        using var _ = no_grad();
        using var r = SequenceLogProbs.Compute(model, SequenceCollator.Collate([(prompt, g.TokenIds)], 0, PaddingSide.Left));
        Assert.InRange(r.Sum[0].item<float>() - g.SumLogProb, -1e-4, 1e-4);
    }

    [Fact]
    public void RowsStopAtTheirOwnEos()
    {
        using var model = TinyModels.Create();
        // Find the greedy first token of a prompt, then declare it EOS: that row must stop after one token.
        var first = TextGenerator.Generate(model, [[1, 5, 9]], new SamplingOptions { MaxNewTokens = 1, Temperature = 0 }, [], 0)[0].TokenIds[0];
        var res = TextGenerator.Generate(model, [[1, 5, 9], [1, 30, 31, 32]], new SamplingOptions { MaxNewTokens = 8, Temperature = 0 }, [first], 0);
        Assert.Equal([first], res[0].TokenIds);
        Assert.Equal(FinishReason.Eos, res[0].FinishReason);
        Assert.True(res[1].TokenIds.Length == 8 || res[1].TokenIds[^1] == first);
    }

    [Fact]
    public void PromptLongerThanContextIsAClearError()
    {
        using var model = TinyModels.Create();
        var e = Assert.Throws<ArgumentException>(() =>
            TextGenerator.Generate(model, [[.. Enumerable.Repeat(3, 120)]], new SamplingOptions { MaxNewTokens = 16 }, [2], 0));
        Assert.Contains("max_position_embeddings", e.Message);
    }

    [Fact]
    public void SamplesDoNotDependOnWhichPromptsShareTheBatch()
    {
        using var model = TinyModels.Create();
        int[][] prompts = [[1, 5, 9], [1, 7, 8, 9, 10, 11], [1, 20]];
        var opts = new SamplingOptions { MaxNewTokens = 10, NumSamples = 2, Seed = 9, TopP = 0.9 };
        var all = TextGenerator.Generate(model, prompts, opts, [2], padId: 0, promptSeeds: [100, 101, 102]);
        var alone = TextGenerator.Generate(model, [prompts[1]], opts, [2], padId: 0, promptSeeds: [101]);
        Assert.Equal(alone.Select(x => x.TokenIds), all.Where(x => x.PromptIndex == 1).Select(x => x.TokenIds));
        for (var i = 0; i < alone.Count; i++)
            Assert.Equal(alone[i].TokenLogProbs.Select(v => Math.Round(v, 4)), all.Where(x => x.PromptIndex == 1).ElementAt(i).TokenLogProbs.Select(v => Math.Round(v, 4)));
    }

    [Fact]
    public void TopKOneSamplingEqualsGreedy()
    {
        using var model = TinyModels.Create();
        int[][] prompts = [[1, 5, 9], [1, 30]];
        var greedy = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 8, Temperature = 0 }, [], 0);
        var topOne = TextGenerator.Generate(model, prompts, new SamplingOptions { MaxNewTokens = 8, TopK = 1, Seed = 4 }, [], 0);
        Assert.Equal(greedy.Select(g => g.TokenIds), topOne.Select(g => g.TokenIds));
    }

    [Fact]
    public void SampleFrequenciesFollowTheModelDistribution()
    {
        // 400 one-token samples of one prompt: the empirical frequency of the most likely token matches its probability.
        using var model = TinyModels.Create(TinyModels.Llama(vocab: 8));
        int[] prompt = [1, 3, 4];
        var res = TextGenerator.Generate(model, [prompt], new SamplingOptions { MaxNewTokens = 1, NumSamples = 400, Seed = 1 }, [], 0);
        using var _ = no_grad();
        using var logits = model.Forward(tensor(new long[] { 1, 3, 4 }, [1, 3]));
        var probs = logits[0, 2].softmax(-1).data<float>().ToArray();
        var top = Array.IndexOf(probs, probs.Max());
        var freq = res.Count(r => r.TokenIds[0] == top) / 400.0;
        Assert.InRange(freq, probs[top] - 0.08, probs[top] + 0.08);
    }
}
