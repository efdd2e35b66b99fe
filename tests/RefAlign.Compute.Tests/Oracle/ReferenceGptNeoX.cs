using RefAlign.Compute.Models;

namespace RefAlign.Compute.Tests.Oracle;

/// <summary>Convention errors the NeoX oracle can be told to make, so a test can show the comparison would catch them.</summary>
internal sealed record NeoXOracleFaults
{
    public static readonly NeoXOracleFaults None = new();

    /// <summary>Rotate every dim of each head instead of only the first int(head_dim·rotary_pct).</summary>
    public bool FullRotary { get; init; }

    /// <summary>Read query_key_value's output as [all q | all k | all v] instead of per head [q, k, v].</summary>
    public bool BlockedQkv { get; init; }
}

/// <summary>
/// Independent double-precision forward pass of GPTNeoXForCausalLM written from the equations of transformers'
/// modeling_gpt_neox, in plain loops over arrays (no TorchSharp). A test oracle only: one unpadded sequence at
/// positions 0..T-1.
/// <code>
/// h = embed_in[ids]
/// per layer:  a = dense(attn(LN1(h)))            q,k,v per head from query_key_value, rotary on the first r dims
///             parallel:   h = h + a + mlp(LN2(h))
///             sequential: h = h + a; h = h + mlp(LN2(h))
/// mlp(x) = dense_4h_to_h(gelu(dense_h_to_4h(x)))
/// logits = embed_out(final_layer_norm(h))           (embed_in when tie_word_embeddings)
/// </code>
/// </summary>
internal sealed class ReferenceGptNeoX
{
    readonly CausalLmConfig _c;
    readonly IReadOnlyDictionary<string, double[]> _w;
    readonly NeoXOracleFaults _faults;
    readonly int _rotary;
    readonly double[] _invFreq;

    public ReferenceGptNeoX(CausalLmConfig config, IReadOnlyDictionary<string, double[]> weights, NeoXOracleFaults? faults = null)
    {
        _c = config;
        _w = weights;
        _faults = faults ?? NeoXOracleFaults.None;
        var d = _c.HiddenSize / _c.NumAttentionHeads;
        // rotary_ndims = int(head_size * rotary_pct); inv_freq = 1 / base^(arange(0, r, 2) / r)
        _rotary = _faults.FullRotary ? d : (int)(d * _c.RotaryPct);
        _invFreq = new double[_rotary / 2];
        for (var i = 0; i < _invFreq.Length; i++) _invFreq[i] = 1.0 / Math.Pow(_c.RopeTheta, 2.0 * i / _rotary);
    }

    /// <summary>Logits [T, vocab] for one unpadded sequence at positions 0..T-1.</summary>
    public double[,] Logits(int[] tokenIds)
    {
        int t = tokenIds.Length, hd = _c.HiddenSize, v = _c.VocabSize;
        var embed = W("gpt_neox.embed_in.weight", (long)v * hd);
        var x = new double[t][];
        for (var p = 0; p < t; p++)
        {
            x[p] = new double[hd];
            Array.Copy(embed, (long)tokenIds[p] * hd, x[p], 0, hd);
        }

        for (var layer = 0; layer < _c.NumHiddenLayers; layer++)
        {
            var pre = $"gpt_neox.layers.{layer}.";
            var attn = Attention(x.Select(r => LayerNorm(r, pre + "input_layernorm")).ToArray(), pre + "attention.");
            for (var p = 0; p < t; p++)
            {
                if (_c.UseParallelResidual)
                {
                    var m = Mlp(LayerNorm(x[p], pre + "post_attention_layernorm"), pre + "mlp.");
                    for (var i = 0; i < hd; i++) x[p][i] += attn[p][i] + m[i];
                }
                else
                {
                    for (var i = 0; i < hd; i++) x[p][i] += attn[p][i];
                    var m = Mlp(LayerNorm(x[p], pre + "post_attention_layernorm"), pre + "mlp.");
                    for (var i = 0; i < hd; i++) x[p][i] += m[i];
                }
            }
        }

        var head = _c.TieWordEmbeddings ? embed : W("embed_out.weight", (long)v * hd);
        var logits = new double[t, v];
        for (var p = 0; p < t; p++)
        {
            var h = LayerNorm(x[p], "gpt_neox.final_layer_norm");
            for (var o = 0; o < v; o++)
            {
                double s = 0;
                for (var i = 0; i < hd; i++) s += head[(long)o * hd + i] * h[i];
                logits[p, o] = s;
            }
        }
        return logits;
    }

    double[][] Attention(double[][] x, string pre)
    {
        int t = x.Length, hd = _c.HiddenSize, nh = _c.NumAttentionHeads, d = hd / nh;
        var qkv = x.Select(r => Linear(r, pre + "query_key_value", 3 * hd, hd)).ToArray();
        // Per head h the fused output holds [q_h, k_h, v_h] at offset 3·d·h (view(B, T, heads, 3·d), then split).
        int Offset(int h, int part) => _faults.BlockedQkv ? part * hd + h * d : 3 * d * h + part * d;
        var q = new double[t][];
        var k = new double[t][];
        var v = new double[t][];
        for (var p = 0; p < t; p++)
        {
            q[p] = new double[hd];
            k[p] = new double[hd];
            v[p] = new double[hd];
            for (var h = 0; h < nh; h++)
            {
                Array.Copy(qkv[p], Offset(h, 0), q[p], h * d, d);
                Array.Copy(qkv[p], Offset(h, 1), k[p], h * d, d);
                Array.Copy(qkv[p], Offset(h, 2), v[p], h * d, d);
                Rotate(q[p], h * d, p);
                Rotate(k[p], h * d, p);
            }
        }

        var scale = 1.0 / Math.Sqrt(d);
        var merged = new double[t][];
        for (var qp = 0; qp < t; qp++)
        {
            merged[qp] = new double[hd];
            for (var h = 0; h < nh; h++)
            {
                var scores = new double[qp + 1];
                var max = double.NegativeInfinity;
                for (var kp = 0; kp <= qp; kp++)
                {
                    double s = 0;
                    for (var i = 0; i < d; i++) s += q[qp][h * d + i] * k[kp][h * d + i];
                    scores[kp] = s * scale;
                    max = Math.Max(max, scores[kp]);
                }
                double z = 0;
                for (var kp = 0; kp <= qp; kp++) z += scores[kp] = Math.Exp(scores[kp] - max);
                for (var kp = 0; kp <= qp; kp++)
                    for (var i = 0; i < d; i++) merged[qp][h * d + i] += scores[kp] / z * v[kp][h * d + i];
            }
        }
        return merged.Select(r => Linear(r, pre + "dense", hd, hd)).ToArray();
    }

    /// <summary>
    /// rotate_half on the first r dims of one head: element i pairs with i + r/2 at frequency i; dims r.. pass through.
    /// </summary>
    void Rotate(double[] vec, int offset, int position)
    {
        var half = _rotary / 2;
        var src = new double[_rotary];
        Array.Copy(vec, offset, src, 0, _rotary);
        for (var i = 0; i < half; i++)
        {
            var angle = position * _invFreq[i];
            double cos = Math.Cos(angle), sin = Math.Sin(angle);
            vec[offset + i] = src[i] * cos - src[i + half] * sin;
            vec[offset + i + half] = src[i + half] * cos + src[i] * sin;
        }
    }

    double[] Mlp(double[] x, string pre)
    {
        int hd = _c.HiddenSize, inter = _c.IntermediateSize;
        var up = Linear(x, pre + "dense_h_to_4h", inter, hd);
        for (var i = 0; i < inter; i++) up[i] = Gelu(up[i]);
        return Linear(up, pre + "dense_4h_to_h", hd, inter);
    }

    /// <summary>"gelu": x·Φ(x) = x/2·(1 + erf(x/√2)); the tanh variants: x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).</summary>
    double Gelu(double x) => _c.HiddenAct == "gelu"
        ? 0.5 * x * (1 + Erf(x / Math.Sqrt(2)))
        : 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>erf by its everywhere-convergent series of positive terms: 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(2n+1)!!.</summary>
    internal static double Erf(double x)
    {
        if (Math.Abs(x) > 6) return Math.Sign(x); // 1 − erf(6) < 3e-17
        double term = x, sum = x;
        for (var n = 1; n < 500 && Math.Abs(term) > 1e-18 * Math.Abs(sum); n++)
        {
            term *= 2 * x * x / (2 * n + 1);
            sum += term;
        }
        return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
    }

    /// <summary>nn.LayerNorm: (x − mean)/√(var + eps)·weight + bias, biased variance.</summary>
    double[] LayerNorm(double[] x, string name)
    {
        var w = W(name + ".weight", x.Length);
        var b = W(name + ".bias", x.Length);
        var mean = x.Average();
        var variance = x.Sum(e => (e - mean) * (e - mean)) / x.Length;
        var r = 1.0 / Math.Sqrt(variance + _c.LayerNormEps);
        return [.. x.Select((e, i) => (e - mean) * r * w[i] + b[i])];
    }

    /// <summary>nn.Linear: y = W x + b with W stored [out, in]; the bias is used when the checkpoint has one.</summary>
    double[] Linear(double[] x, string name, int outDim, int inDim)
    {
        var w = W(name + ".weight", (long)outDim * inDim);
        var bias = _w.TryGetValue(name + ".bias", out var b) ? b : null;
        var y = new double[outDim];
        for (var o = 0; o < outDim; o++)
        {
            double s = bias?[o] ?? 0;
            for (var i = 0; i < inDim; i++) s += w[(long)o * inDim + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    double[] W(string name, long expected)
    {
        if (!_w.TryGetValue(name, out var w)) throw new KeyNotFoundException($"oracle: weight '{name}' is missing.");
        if (w.LongLength != expected) throw new ArgumentException($"oracle: weight '{name}' has {w.LongLength} values, expected {expected}.");
        return w;
    }
}
