using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>
/// A projection at a decode step. With a few rows and no autograd, <c>linear</c> is a matrix–vector product that MKL
/// runs on one thread however many the process has, so the step's weight reads use one core. Here the weight's output
/// rows are cut into one block per intra-op thread and the blocks run as one batched product, one block per thread.
/// Each output is still the same dot product over the same inputs, so the bits equal <c>linear</c>'s
/// (DecodeProjectionTests).
/// </summary>
public static class DecodeProjection
{
    /// <summary>Rows up to which the split is used: measured, it gains most at 1 row, ≈ 10 % at 8 and nothing at 32 (README, decoder figures).</summary>
    public const long MaxRows = 8;

    /// <summary>Off: every projection is plain <c>linear</c> (benches compare both in one process).</summary>
    public static bool Enabled { get; set; } = true;

    // Below this many output rows per block the batched call's overhead outweighs the second core.
    const long MinBlockRows = 64;

    /// <summary><c>linear(x, weight, bias)</c>, split across the intra-op threads where that is faster.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias) => Linear(x, weight, bias, Blocks(x, weight));

    /// <summary>
    /// <c>linear(x, weight, bias)</c> computed as <paramref name="blocks"/> products over row blocks of
    /// <paramref name="weight"/> (which must divide its rows); below 2 blocks, plain <c>linear</c>.
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias, long blocks)
    {
        if (blocks < 2) return nn.functional.linear(x, weight, bias);
        if (weight.shape[0] % blocks != 0)
            throw new ArgumentException($"{blocks} blocks do not divide the weight's {weight.shape[0]} rows.", nameof(blocks));
        using var scope = NewDisposeScope();
        long inputs = weight.shape[1], outputs = weight.shape[0], rows = x.numel() / inputs;
        var y = bmm(x.reshape(1, rows, inputs).expand(blocks, rows, inputs), weight.view(blocks, outputs / blocks, inputs).transpose(1, 2))
            .transpose(0, 1).reshape([.. x.shape[..^1], outputs]);
        if (bias is not null) y = y + bias;
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>How many blocks <see cref="Linear(Tensor, Tensor, Tensor?)"/> cuts <paramref name="weight"/> into for <paramref name="x"/>; below 2 means no split.</summary>
    public static long Blocks(Tensor x, Tensor weight)
    {
        if (!Enabled || x.device_type != DeviceType.CPU || x.dtype != ScalarType.Float32 || weight.dtype != ScalarType.Float32) return 0;
        if (x.shape[^1] != weight.shape[1] || x.numel() / weight.shape[1] > MaxRows) return 0;
        if (is_grad_enabled() || !weight.is_contiguous()) return 0;
        // As many blocks as threads, or the most that divide the rows evenly.
        for (var blocks = get_num_threads(); blocks >= 2; blocks--)
            if (weight.shape[0] % blocks == 0 && weight.shape[0] / blocks >= MinBlockRows) return blocks;
        return 0;
    }
}
