using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>Rotary position embedding in HF's "rotate half" layout, with the linear and llama3 frequency scalings.</summary>
public static class RotaryEmbedding
{
    /// <summary>
    /// Inverse frequencies (rotary_dims/2 values; rotary_dims = head_dim except for NeoX's partial rotary), computed in
    /// double and rounded once to float32.
    /// </summary>
    public static float[] InverseFrequencies(CausalLmConfig c)
    {
        var dims = c.RotaryDims;
        var half = dims / 2;
        var inv = new double[half];
        for (var i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / dims);
        if (c.RopeScaling is { Type: "linear" } lin)
            for (var i = 0; i < half; i++) inv[i] /= lin.Factor;
        else if (c.RopeScaling is { Type: "llama3" } s)
            Llama3Scale(inv, s);
        return [.. inv.Select(x => (float)x)];
    }

    // Same piecewise rule as transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`,
    // short ones kept, the band between blended smoothly.
    static void Llama3Scale(double[] inv, RopeScaling s)
    {
        var lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        var highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        for (var i = 0; i < inv.Length; i++)
        {
            var wavelen = 2 * Math.PI / inv[i];
            var scaled = wavelen > lowWavelen ? inv[i] / s.Factor : inv[i];
            var medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
            if (medium)
            {
                var smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                scaled = (1 - smooth) * scaled / s.Factor + smooth * scaled;
            }
            inv[i] = scaled;
        }
    }

    /// <summary>
    /// cos and sin of shape [B, 1, T, head_dim] for integer positions [B, T], in <paramref name="dtype"/>. The sin
    /// comes with its first half negated, the sign rotate-half puts on x₂, so <see cref="Apply"/> needs no negation
    /// of its own (negating either factor of a product gives the same bits).
    /// </summary>
    public static (Tensor Cos, Tensor SignedSin) CosSin(Tensor invFreq, Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq.to(positionIds.device).view(1, 1, -1);
        var cos = freqs.cos();
        var sin = freqs.sin();
        return (cat([cos, cos], -1).unsqueeze(1).to(dtype).MoveToOuterDisposeScope(),
            cat([-sin, sin], -1).unsqueeze(1).to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// NeoX's partial rotary: the first cos.shape[-1] dims of each head are rotated (rotate-half within them), the
    /// rest pass through unchanged.
    /// </summary>
    public static Tensor ApplyPartial(Tensor x, Tensor cos, Tensor signedSin)
    {
        long d = x.shape[^1], r = cos.shape[^1];
        if (r == d) return Apply(x, cos, signedSin);
        using var scope = NewDisposeScope();
        var rotated = Apply(x.narrow(-1, 0, r), cos, signedSin);
        return cat([rotated, x.narrow(-1, r, d - r)], -1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁]: here [x₂, x₁] (one roll) times the signed sin of
    /// <see cref="CosSin"/>, four ops instead of seven per call (decoding is dominated by per-op overhead).
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        using var scope = NewDisposeScope();
        var swapped = x.roll(x.shape[^1] / 2, -1);
        return (x * cos + swapped * signedSin).MoveToOuterDisposeScope();
    }
}
