using RefAlign.Compute.Generation;
using RefAlign.Compute.Models;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Splitting a decode step's projections across threads (<see cref="DecodeProjection"/>) is a speed-up only: every
/// output is the same dot product, so the bits equal <c>linear</c>'s and sampling draws the same tokens.
/// </summary>
public sealed class DecodeProjectionTests
{
    [Theory]
    [InlineData(512, 512, 2)]
    [InlineData(512, 1408, 2)]
    [InlineData(1408, 512, 2)]
    [InlineData(512, 2048, 4)]
    [InlineData(173, 384, 3)]
    [InlineData(255, 256, 2)]
    [InlineData(64, 1152, 6)]
    public void BlocksGiveTheBitsOfLinear(int inputs, int outputs, int blocks)
    {
        using var _ = no_grad();
        using var gen = new Generator(7);
        using var x = randn([1, 1, inputs], generator: gen);
        using var w = randn([outputs, inputs], generator: gen);
        using var bias = randn([outputs], generator: gen);
        foreach (var b in new Tensor?[] { null, bias })
        {
            using var plain = nn.functional.linear(x, w, b);
            using var split = DecodeProjection.Linear(x, w, b, blocks);
            Assert.Equal(plain.shape, split.shape);
            Assert.True(plain.equal(split).all().item<bool>(), $"{inputs} → {outputs} in {blocks} blocks, bias {b is not null}: max diff {(plain - split).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void OnlyOneRowAndAlignedBlocksAreSplit()
    {
        // Where MKL would pick other kernels (several rows, ragged blocks) the split is refused, and never chosen.
        using var _ = no_grad();
        using var rows = ones(5, 128);
        using var row = ones(1, 128);
        using var w = ones(256, 128);
        using var ragged = ones(260, 128);
        Assert.Contains("one row of 128 inputs", Assert.Throws<ArgumentException>(() => DecodeProjection.Linear(rows, w, null, 2)).Message);
        Assert.Contains("260 rows", Assert.Throws<ArgumentException>(() => DecodeProjection.Linear(row, ragged, null, 2)).Message);
        Assert.True(DecodeProjection.Blocks(rows, w) < 2);
        Assert.True(DecodeProjection.Blocks(row, ragged) < 2);
    }

    [Fact]
    public void GradientsStillFlowThroughTheUnsplitPath()
    {
        // With autograd on the split never applies: training sees plain linear and its gradient.
        using var x = ones(1, 128);
        using var w = ones([256, 128], requires_grad: true);
        using var y = DecodeProjection.Linear(x, w, null);
        y.sum().backward();
        Assert.Equal(1f, w.grad!.mean().item<float>());
    }

    [Fact]
    public void SampledTokensAndLogitsDoNotDependOnTheSplit()
    {
        // Wide enough (256 hidden, 768 intermediate, 2 × 64 kv) that every projection splits on a 2-thread machine.
        var config = TinyModels.Llama(vocab: 256) with { HiddenSize = 256, IntermediateSize = 768, HeadDim = 64, InitializerRange = 0.05 };
        using var model = TinyModels.Create(config, seed: 4);
        if (get_num_threads() >= 2)
            using (no_grad())
            using (var x = ones(1, 1, 256))
            using (var w = ones(768, 256))
                Assert.True(DecodeProjection.Blocks(x, w) >= 2, "a decode step's projection should split on this machine");
        // Batch 1, the shape that splits: each prompt sampled on its own.
        int[][] prompts = [[1, 5, 9, 11, 3], [1, 7]];
        var opts = new SamplingOptions { MaxNewTokens = 12, Seed = 3 };
        (List<int[]>, List<float[]>) Run()
        {
            var logits = new List<float[]>();
            var tokens = prompts.Select(p => TextGenerator.Generate(model, [p], opts, [], padId: 0,
                onStepLogits: (_, l) => logits.Add(l.data<float>().ToArray()))[0].TokenIds).ToList();
            return (tokens, logits);
        }
        var (split, splitLogits) = Run();
        try
        {
            DecodeProjection.Enabled = false;
            var (plain, plainLogits) = Run();
            Assert.Equal(plain, split);
            Assert.Equal(plainLogits, splitLogits);
        }
        finally
        {
            DecodeProjection.Enabled = true;
        }
    }
}
