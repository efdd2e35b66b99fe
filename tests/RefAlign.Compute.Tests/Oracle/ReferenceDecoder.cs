using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using TorchSharp;

namespace RefAlign.Compute.Tests.Oracle;

/// <summary>
/// Deliberate convention errors the oracle can be told to make, so tests can prove that a comparison against it
/// fails when a convention is broken.
/// </summary>
internal sealed record OracleFaults
{
    public static readonly OracleFaults None = new();

    /// <summary>Rotate adjacent pairs (x0,x1),(x2,x3)… (GPT-J / Meta layout) instead of HF's halves (x_i, x_{i+d/2}).</summary>
    public bool InterleavedRotary { get; init; }

    /// <summary>Plain causal attention even when the config has a sliding window.</summary>
    public bool IgnoreSlidingWindow { get; init; }

    /// <summary>Unscaled RoPE frequencies even when the config has rope_scaling.</summary>
    public bool IgnoreRopeScaling { get; init; }
}

/// <summary>
/// Independent double-precision forward pass of LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM written
/// from the Hugging Face transformers definitions, in plain loops over arrays (no TorchSharp). A test oracle only:
/// slow, one unpadded sequence at positions 0..T-1.
/// </summary>
internal sealed class ReferenceDecoder
{
    readonly CausalLmConfig _c;
    readonly IReadOnlyDictionary<string, double[]> _w;
    readonly OracleFaults _faults;

    public ReferenceDecoder(CausalLmConfig config, IReadOnlyDictionary<string, double[]> weights, OracleFaults? faults = null)
    {
        _c = config;
        _w = weights;
        _faults = faults ?? OracleFaults.None;
        if (_c.NumAttentionHeads % _c.NumKeyValueHeads != 0)
            throw new ArgumentException("num_attention_heads must be a multiple of num_key_value_heads.");
        if (_c.HeadDim % 2 != 0) throw new ArgumentException("head_dim must be even for RoPE.");
        InverseFrequencies = ComputeInverseFrequencies(_c, _faults.IgnoreRopeScaling);
    }

    /// <summary>The RoPE inverse frequencies (head_dim/2 values) this oracle uses.</summary>
    public double[] InverseFrequencies { get; }

    /// <summary>Reads every tensor of an HF folder into double arrays (row-major, original shapes flattened).</summary>
    public static Dictionary<string, double[]> ReadWeights(string folder)
    {
        var tensors = ModelWeights.Load(folder);
        try
        {
            var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
            foreach (var (name, t) in tensors)
            {
                using var d = t.to(torch.float64).contiguous();
                result[name] = d.data<double>().ToArray();
            }
            return result;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>
    /// transformers' default RoPE init (inv_freq = 1 / theta^(2i/d)) followed by the scaling of rope_scaling:
    /// "linear" divides by factor; "llama3" follows _compute_llama3_parameters.
    /// </summary>
    public static double[] ComputeInverseFrequencies(CausalLmConfig c, bool ignoreScaling = false)
    {
        var d = c.HeadDim;
        var inv = new double[d / 2];
        for (var i = 0; i < inv.Length; i++) inv[i] = 1.0 / Math.Pow(c.RopeTheta, (2.0 * i) / d);
        if (ignoreScaling || c.RopeScaling is null) return inv;
        var rs = c.RopeScaling;
        switch (rs.Type)
        {
            case "linear":
                for (var i = 0; i < inv.Length; i++) inv[i] /= rs.Factor;
                return inv;
            case "llama3":
                {
                    double factor = rs.Factor, low = rs.LowFreqFactor, high = rs.HighFreqFactor;
                    double oldCtx = rs.OriginalMaxPositionEmbeddings;
                    var lowFreqWavelen = oldCtx / low;
                    var highFreqWavelen = oldCtx / high;
                    var result = new double[inv.Length];
                    for (var i = 0; i < inv.Length; i++)
                    {
                        var wavelen = 2 * Math.PI / inv[i];
                        // inv_freq_llama = where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
                        var llama = wavelen > lowFreqWavelen ? inv[i] / factor : inv[i];
                        var smoothFactor = (oldCtx / wavelen - low) / (high - low);
                        var smoothed = (1 - smoothFactor) * llama / factor + smoothFactor * llama;
                        var isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
                        result[i] = isMedium ? smoothed : llama;
                    }
                    return result;
                }
            default:
                throw new NotSupportedException($"rope_scaling type '{rs.Type}' is not in the oracle.");
        }
    }

    /// <summary>Logits [T, vocab] for one unpadded sequence at positions 0..T-1.</summary>
    public double[,] Logits(int[] tokenIds)
    {
        var normed = FinalHidden(tokenIds);
        int t = tokenIds.Length, hd = _c.HiddenSize, v = _c.VocabSize;
        var head = _c.TieWordEmbeddings ? W("model.embed_tokens.weight", (long)v * hd) : W("lm_head.weight", (long)v * hd);
        var logits = new double[t, v];
        for (var p = 0; p < t; p++)
        {
            var h = normed[p];
            for (var o = 0; o < v; o++)
            {
                double s = 0;
                var off = (long)o * hd;
                for (var i = 0; i < hd; i++) s += head[off + i] * h[i];
                logits[p, o] = s;
            }
        }
        return logits;
    }

    /// <summary>The final normed hidden state of every position (what the LM head, or a classifier's score head, reads).</summary>
    public double[][] FinalHidden(int[] tokenIds)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        int t = tokenIds.Length, hd = _c.HiddenSize, v = _c.VocabSize;

        // embed_tokens
        var embed = W("model.embed_tokens.weight", (long)v * hd);
        var x = new double[t][];
        for (var p = 0; p < t; p++)
        {
            var id = tokenIds[p];
            if (id < 0 || id >= v) throw new ArgumentOutOfRangeException(nameof(tokenIds), $"token {id} outside vocab {v}.");
            x[p] = new double[hd];
            Array.Copy(embed, (long)id * hd, x[p], 0, hd);
        }

        for (var layer = 0; layer < _c.NumHiddenLayers; layer++)
        {
            var pre = $"model.layers.{layer}.";
            var normed = x.Select(r => RmsNorm(r, W(pre + "input_layernorm.weight", hd))).ToArray();
            var attn = Attention(normed, pre + "self_attn.");
            for (var p = 0; p < t; p++) Add(x[p], attn[p]);
            for (var p = 0; p < t; p++)
            {
                var n = RmsNorm(x[p], W(pre + "post_attention_layernorm.weight", hd));
                Add(x[p], Mlp(n, pre + "mlp."));
            }
        }

        return [.. x.Select(r => RmsNorm(r, W("model.norm.weight", hd)))];
    }

    double[][] Attention(double[][] x, string pre)
    {
        int t = x.Length, hd = _c.HiddenSize, d = _c.HeadDim;
        int nh = _c.NumAttentionHeads, nkv = _c.NumKeyValueHeads, groups = nh / nkv;
        var q = x.Select(r => Linear(r, pre + "q_proj", nh * d, hd)).ToArray();
        var k = x.Select(r => Linear(r, pre + "k_proj", nkv * d, hd)).ToArray();
        var vv = x.Select(r => Linear(r, pre + "v_proj", nkv * d, hd)).ToArray();

        for (var p = 0; p < t; p++)
        {
            for (var h = 0; h < nh; h++) Rope(q[p], h * d, p);
            for (var h = 0; h < nkv; h++) Rope(k[p], h * d, p);
        }

        var scale = 1.0 / Math.Sqrt(d);
        var window = _faults.IgnoreSlidingWindow ? null : _c.SlidingWindow;
        var merged = new double[t][];
        for (var qp = 0; qp < t; qp++)
        {
            merged[qp] = new double[nh * d];
            for (var h = 0; h < nh; h++)
            {
                var kvh = h / groups; // repeat_kv: query head h reads kv head h / n_rep
                var scores = new double[qp + 1];
                var visible = new bool[qp + 1];
                var max = double.NegativeInfinity;
                for (var kp = 0; kp <= qp; kp++)
                {
                    visible[kp] = window is not int w || qp - kp < w;
                    if (!visible[kp]) continue;
                    double s = 0;
                    for (var i = 0; i < d; i++) s += q[qp][h * d + i] * k[kp][kvh * d + i];
                    scores[kp] = s * scale;
                    max = Math.Max(max, scores[kp]);
                }
                double z = 0;
                for (var kp = 0; kp <= qp; kp++)
                {
                    scores[kp] = visible[kp] ? Math.Exp(scores[kp] - max) : 0;
                    z += scores[kp];
                }
                for (var kp = 0; kp <= qp; kp++)
                {
                    var a = scores[kp] / z;
                    if (a == 0) continue;
                    for (var i = 0; i < d; i++) merged[qp][h * d + i] += a * vv[kp][kvh * d + i];
                }
            }
        }
        return merged.Select(r => Linear(r, pre + "o_proj", hd, nh * d)).ToArray();
    }

    /// <summary>
    /// HF apply_rotary_pos_emb: x*cos + rotate_half(x)*sin, with cos/sin = cos/sin(cat(freqs, freqs)) and
    /// rotate_half(x) = cat(-x2, x1), i.e. element i pairs with i + d/2 and both use frequency i.
    /// </summary>
    void Rope(double[] v, int offset, int position)
    {
        var d = _c.HeadDim;
        var half = d / 2;
        var src = new double[d];
        Array.Copy(v, offset, src, 0, d);
        for (var i = 0; i < half; i++)
        {
            var angle = position * InverseFrequencies[i];
            double cos = Math.Cos(angle), sin = Math.Sin(angle);
            // Faulty variant pairs adjacent elements (2i, 2i+1) instead of (i, i + d/2).
            int a = _faults.InterleavedRotary ? 2 * i : i, b = _faults.InterleavedRotary ? 2 * i + 1 : i + half;
            v[offset + a] = src[a] * cos - src[b] * sin;
            v[offset + b] = src[b] * cos + src[a] * sin;
        }
    }

    double[] Mlp(double[] x, string pre)
    {
        int hd = _c.HiddenSize, inter = _c.IntermediateSize;
        var gate = Linear(x, pre + "gate_proj", inter, hd);
        var up = Linear(x, pre + "up_proj", inter, hd);
        var act = new double[inter];
        for (var i = 0; i < inter; i++)
        {
            var g = gate[i];
            act[i] = g / (1 + Math.Exp(-g)) * up[i]; // silu(g) * up
        }
        return Linear(act, pre + "down_proj", hd, inter);
    }

    /// <summary>nn.Linear: y = W x + b with W stored [out, in]; the bias is used when the checkpoint has one.</summary>
    double[] Linear(double[] x, string name, int outDim, int inDim)
    {
        var w = W(name + ".weight", (long)outDim * inDim);
        var bias = _w.TryGetValue(name + ".bias", out var b) ? b : null;
        if (bias is not null && bias.Length != outDim) throw new ArgumentException($"{name}.bias has {bias.Length} values, expected {outDim}.");
        var y = new double[outDim];
        for (var o = 0; o < outDim; o++)
        {
            double s = bias?[o] ?? 0;
            var off = (long)o * inDim;
            for (var i = 0; i < inDim; i++) s += w[off + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    /// <summary>LlamaRMSNorm: x * rsqrt(mean(x²) + eps) * weight.</summary>
    double[] RmsNorm(double[] x, double[] weight)
    {
        double ms = 0;
        foreach (var e in x) ms += e * e;
        ms /= x.Length;
        var r = 1.0 / Math.Sqrt(ms + _c.RmsNormEps);
        var y = new double[x.Length];
        for (var i = 0; i < x.Length; i++) y[i] = weight[i] * (x[i] * r);
        return y;
    }

    static void Add(double[] acc, double[] v)
    {
        for (var i = 0; i < acc.Length; i++) acc[i] += v[i];
    }

    double[] W(string name, long expected)
    {
        if (!_w.TryGetValue(name, out var w)) throw new KeyNotFoundException($"oracle: weight '{name}' is missing.");
        if (w.LongLength != expected) throw new ArgumentException($"oracle: weight '{name}' has {w.LongLength} values, expected {expected}.");
        return w;
    }
}
