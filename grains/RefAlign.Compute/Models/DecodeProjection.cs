using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>
/// A projection at a batch-1 decode step. With one row and no autograd, <c>linear</c> is a matrix–vector product that
/// MKL runs on one thread however many the process has, so the step's weight reads use one core. Here the weight's
/// output rows are cut into one block per intra-op thread and the blocks run as one batched product, one block per
/// thread. Each output is the same dot product computed by the same kernel, so the bits equal <c>linear</c>'s
/// (DecodeProjectionTests). Only one row, and blocks of a multiple of <see cref="BlockAlignment"/> weight rows: with
/// several rows (5, 6, 7, 10 …) or ragged blocks MKL picks other kernels and the last bits differ.
/// </summary>
public static class DecodeProjection
{
    /// <summary>Weight rows per block are a multiple of this, so both paths group the rows alike.</summary>
    public const long BlockAlignment = 64;

    /// <summary>
    /// Off: every projection on this thread is plain <c>linear</c> (benches and tests compare both in one process).
    /// Per thread, so a comparison never changes the kernels of work running beside it.
    /// </summary>
    public static bool Enabled
    {
        get => !t_disabled;
        set => t_disabled = !value;
    }

    [ThreadStatic]
    static bool t_disabled;

    /// <summary><c>linear(x, weight, bias)</c>, split across the intra-op threads where that is exact and faster.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias) => Linear(x, weight, bias, Blocks(x, weight));

    /// <summary>
    /// <c>linear(x, weight, bias)</c> for one row <paramref name="x"/>, computed as <paramref name="blocks"/> products over
    /// equal row blocks of <paramref name="weight"/> (each a multiple of <see cref="BlockAlignment"/> rows); below 2
    /// blocks, plain <c>linear</c>.
    /// </summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias, long blocks)
    {
        if (blocks < 2) return nn.functional.linear(x, weight, bias);
        long inputs = weight.shape[1], outputs = weight.shape[0];
        if (x.numel() != inputs)
            throw new ArgumentException($"a split projection takes one row of {inputs} inputs; x has shape [{string.Join(", ", x.shape)}].", nameof(x));
        if (outputs % (blocks * BlockAlignment) != 0)
            throw new ArgumentException($"{blocks} blocks of a multiple of {BlockAlignment} rows do not make the weight's {outputs} rows.", nameof(blocks));
        using var scope = NewDisposeScope();
        var y = bmm(x.reshape(1, 1, inputs).expand(blocks, 1, inputs), weight.view(blocks, outputs / blocks, inputs).transpose(1, 2))
            .reshape([.. x.shape[..^1], outputs]);
        if (bias is not null) y = y + bias;
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>How many blocks <see cref="Linear(Tensor, Tensor, Tensor?)"/> cuts <paramref name="weight"/> into for <paramref name="x"/>; below 2 means no split.</summary>
    public static long Blocks(Tensor x, Tensor weight)
    {
        // Every projection asks, training's too: the one-row test, which turns nearly all of those away, comes first.
        if (!Enabled || x.numel() != weight.shape[1] || is_grad_enabled()) return 0;
        if (x.device_type != DeviceType.CPU || x.dtype != ScalarType.Float32 || weight.dtype != ScalarType.Float32 || !weight.is_contiguous()) return 0;
        // As many blocks as threads, or the most that keep the blocks aligned.
        for (var blocks = get_num_threads(); blocks >= 2; blocks--)
            if (weight.shape[0] % (blocks * BlockAlignment) == 0) return blocks;
        return 0;
    }
}
