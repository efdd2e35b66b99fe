using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Prefilling each prompt once for its K samples and dropping finished rows (compact decoding) is an optimisation
/// only: with the same seed it samples the very tokens, with the same log-probs, as the plain batch that keeps every
/// row to the end.
/// </summary>
public sealed class CompactDecodingTests
{
    [Theory]
    [InlineData("llama", false, 1.0)]
    [InlineData("llama", true, 1.0)]
    [InlineData("qwen2", false, 0.8)]
    [InlineData("mistral", false, 1.0)]
    [InlineData("gpt-neox", false, 1.0)]
    [InlineData("gpt-neox", true, 1.0)]
    [InlineData("llama", false, 0.0)]
    public void CompactDecodingSamplesTheTokensOfThePlainBatch(string arch, bool lora, double temperature)
    {
        using var model = TinyModels.Create(Config(arch), seed: 11);
        using var adapters = lora ? LoraAdapters.Attach(model, new LoraConfig { Rank = 4, TargetModules = [LoraConfig.AllLinear] }, seed: 5) : null;
        if (adapters is not null) LoraTests.RandomizeB(adapters, 6);
        int[][] prompts = [[1, 5, 9, 11, 3], [1, 7], [1, 40, 41, 42, 43, 44, 45], [1, 12, 13]];
        var opts = new SamplingOptions { MaxNewTokens = 14, Temperature = temperature, TopP = 0.95, NumSamples = 3, Seed = 21 };
        long[] seeds = [100, 101, 102, 103];

        // An EOS that some rows sample early and others never: the token most often sampled at step 3.
        var free = TextGenerator.Generate(model, prompts, opts, [], padId: 0, promptSeeds: seeds, compact: false);
        var eos = free.GroupBy(s => s.TokenIds[3]).MaxBy(g => g.Count())!.Key;

        var plain = TextGenerator.Generate(model, prompts, opts, [eos], padId: 0, promptSeeds: seeds, compact: false);
        var compact = TextGenerator.Generate(model, prompts, opts, [eos], padId: 0, promptSeeds: seeds, compact: true);
        Assert.Contains(plain, s => s.FinishReason == FinishReason.Eos && s.TokenIds.Length < opts.MaxNewTokens);
        Assert.Contains(plain, s => s.FinishReason == FinishReason.Length);
        Assert.Equal(plain.Count, compact.Count);
        for (var i = 0; i < plain.Count; i++)
        {
            Assert.Equal((plain[i].PromptIndex, plain[i].SampleIndex), (compact[i].PromptIndex, compact[i].SampleIndex));
            Assert.Equal(plain[i].TokenIds, compact[i].TokenIds);
            Assert.Equal(plain[i].FinishReason, compact[i].FinishReason);
            for (var t = 0; t < plain[i].TokenLogProbs.Length; t++)
                Assert.True(Math.Abs(plain[i].TokenLogProbs[t] - compact[i].TokenLogProbs[t]) <= 1e-5,
                    $"row {i} token {t}: {plain[i].TokenLogProbs[t]} vs {compact[i].TokenLogProbs[t]}");
        }
    }

    [Fact]
    public void CompactDecodingMatchesFullRecomputationStepByStep()
    {
        using var model = TinyModels.Create(Config("qwen2"), seed: 3);
        int[][] prompts = [[1, 5, 9, 11, 3], [1, 7]];
        var opts = new SamplingOptions { MaxNewTokens = 10, NumSamples = 2, Seed = 8 };
        var cached = new List<float[]>();
        var full = new List<float[]>();
        var a = TextGenerator.Generate(model, prompts, opts, [], padId: 0, useCache: true, compact: true,
            onStepLogits: (_, l) => cached.Add(l.data<float>().ToArray()));
        var b = TextGenerator.Generate(model, prompts, opts, [], padId: 0, useCache: false,
            onStepLogits: (_, l) => full.Add(l.data<float>().ToArray()));
        Assert.Equal(full.Count, cached.Count);
        for (var s = 0; s < cached.Count; s++)
            Assert.True(cached[s].Zip(full[s]).Max(t => Math.Abs(t.First - t.Second)) <= 1e-4, $"step {s}");
        Assert.Equal(b.Select(x => x.TokenIds), a.Select(x => x.TokenIds));
    }

    [Fact]
    public void MoveRowsFillsDroppedRowsFromTheEndInPlace()
    {
        using var _ = no_grad();
        using var layer = new LayerKvCache(3, 1, 4, 2, ScalarType.Float32, CPU);
        using var k = arange(3 * 2 * 2, dtype: ScalarType.Float32).view(3, 1, 2, 2);
        layer.Append(k, k * 10);
        // Row 1 dropped: row 2 moves into its place.
        using var from = tensor(new long[] { 2 });
        using var to = tensor(new long[] { 1 });
        layer.MoveRows(from, to, 2);
        Assert.Equal(2, layer.Rows);
        using var step = full([2, 1, 1, 2], -1f);
        var (kk, vv) = layer.Append(step, step);
        Assert.Equal([2L, 1, 3, 2], kk.shape);
        Assert.Equal(k[2].data<float>().ToArray(), kk[1].narrow(1, 0, 2).data<float>().ToArray());
        Assert.Equal((k[0] * 10).data<float>().ToArray(), vv[0].narrow(1, 0, 2).data<float>().ToArray());
        Assert.Equal(-1f, kk[1, 0, 2, 0].item<float>());
        Assert.Throws<InvalidOperationException>(() => layer.Append(k.narrow(2, 0, 1), k.narrow(2, 0, 1)));
    }

    static CausalLmConfig Config(string arch) => arch switch
    {
        "gpt-neox" => GptNeoXForwardTests.Small() with { BosTokenId = 1, MaxPositionEmbeddings = 128 },
        "qwen2" => TinyModels.Llama() with { Architecture = "Qwen2ForCausalLM", QkvBias = true, TieWordEmbeddings = true },
        "mistral" => TinyModels.Llama() with { Architecture = "MistralForCausalLM", SlidingWindow = 5 },
        _ => TinyModels.Llama(),
    };

}
