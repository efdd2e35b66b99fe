using RefAlign.Compute.Encoders;

namespace RefAlign.Compute.Tests.Oracle;

/// <summary>Deliberate convention errors, so tests can prove a comparison against the oracle is able to fail.</summary>
internal sealed record EncoderOracleFaults
{
    public static readonly EncoderOracleFaults None = new();

    /// <summary>RoBERTa positions 0..T-1 (BERT's arange) instead of pad_token_id + 1 + i.</summary>
    public bool PlainRobertaPositions { get; init; }

    /// <summary>BART position p reads row p instead of row p + 2.</summary>
    public bool NoBartPositionOffset { get; init; }

    /// <summary>tanh-approximated GELU where the config says exact "gelu".</summary>
    public bool TanhGelu { get; init; }
}

/// <summary>
/// Independent double-precision forward pass of the BertModel / RobertaModel / BartModel encoder, written from the
/// transformers definitions in plain loops over arrays (no TorchSharp, no module code). A test oracle only: one unpadded
/// sequence, hidden states after the first L layers. Weights are the base-model HF names as
/// <see cref="ReferenceDecoder.ReadWeights"/> reads them.
/// </summary>
internal sealed class ReferenceEncoder
{
    readonly EncoderConfig _c;
    readonly IReadOnlyDictionary<string, double[]> _w;
    readonly EncoderOracleFaults _faults;

    public ReferenceEncoder(EncoderConfig config, IReadOnlyDictionary<string, double[]> weights, EncoderOracleFaults? faults = null)
    {
        _c = config;
        _w = weights;
        _faults = faults ?? EncoderOracleFaults.None;
    }

    /// <summary>Hidden states [T, hidden] after <paramref name="layers"/> layers (0 = embedding output).</summary>
    public double[,] HiddenStates(int[] ids, int layers, int[]? tokenTypes = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (layers < 0 || layers > _c.NumHiddenLayers) throw new ArgumentOutOfRangeException(nameof(layers));
        var x = _c.ModelType == "bart" ? BartEmbeddings(ids) : BertEmbeddings(ids, tokenTypes);
        for (var l = 0; l < layers; l++)
            x = _c.ModelType == "bart" ? BartLayer(x, $"encoder.layers.{l}.") : BertLayer(x, $"encoder.layer.{l}.");
        var t = ids.Length;
        var result = new double[t, _c.HiddenSize];
        for (var p = 0; p < t; p++)
            for (var i = 0; i < _c.HiddenSize; i++) result[p, i] = x[p][i];
        return result;
    }

    // ---- BERT / RoBERTa ----

    double[][] BertEmbeddings(int[] ids, int[]? tokenTypes)
    {
        int hd = _c.HiddenSize, t = ids.Length;
        var word = W("embeddings.word_embeddings.weight", (long)_c.VocabSize * hd);
        var pos = W("embeddings.position_embeddings.weight", (long)_c.MaxPositionEmbeddings * hd);
        var type = _c.TypeVocabSize > 0 ? W("embeddings.token_type_embeddings.weight", (long)_c.TypeVocabSize * hd) : null;
        var x = new double[t][];
        var realSoFar = 0;
        for (var p = 0; p < t; p++)
        {
            int position;
            if (_c.ModelType == "roberta" && !_faults.PlainRobertaPositions)
            {
                // create_position_ids_from_input_ids: padding_idx + running count of non-pad tokens, pad tokens at padding_idx.
                if (ids[p] != _c.PadTokenId) realSoFar++;
                position = ids[p] != _c.PadTokenId ? _c.PadTokenId + realSoFar : _c.PadTokenId;
            }
            else position = p;
            x[p] = new double[hd];
            for (var i = 0; i < hd; i++)
                x[p][i] = word[(long)ids[p] * hd + i] + pos[(long)position * hd + i] + (type?[(long)(tokenTypes?[p] ?? 0) * hd + i] ?? 0);
            x[p] = LayerNorm(x[p], "embeddings.LayerNorm");
        }
        return x;
    }

    double[][] BertLayer(double[][] x, string pre)
    {
        int t = x.Length, hd = _c.HiddenSize;
        var ctx = Attention(x, pre + "attention.self.query", pre + "attention.self.key", pre + "attention.self.value");
        var a = new double[t][];
        for (var p = 0; p < t; p++)
        {
            var d = Linear(ctx[p], pre + "attention.output.dense", hd, hd);
            a[p] = LayerNorm(Sum(d, x[p]), pre + "attention.output.LayerNorm");
        }
        var y = new double[t][];
        for (var p = 0; p < t; p++)
        {
            var inter = Linear(a[p], pre + "intermediate.dense", _c.IntermediateSize, hd).Select(Act).ToArray();
            var o = Linear(inter, pre + "output.dense", hd, _c.IntermediateSize);
            y[p] = LayerNorm(Sum(o, a[p]), pre + "output.LayerNorm");
        }
        return y;
    }

    // ---- BART ----

    double[][] BartEmbeddings(int[] ids)
    {
        int hd = _c.HiddenSize, t = ids.Length;
        var tokens = W("shared.weight", (long)_c.VocabSize * hd);
        var pos = W("encoder.embed_positions.weight", (long)(_c.MaxPositionEmbeddings + 2) * hd);
        var scale = _c.ScaleEmbedding ? Math.Sqrt(hd) : 1.0;
        var offset = _faults.NoBartPositionOffset ? 0 : 2;
        var x = new double[t][];
        for (var p = 0; p < t; p++)
        {
            x[p] = new double[hd];
            for (var i = 0; i < hd; i++) x[p][i] = tokens[(long)ids[p] * hd + i] * scale + pos[(long)(p + offset) * hd + i];
            x[p] = LayerNorm(x[p], "encoder.layernorm_embedding");
        }
        return x;
    }

    double[][] BartLayer(double[][] x, string pre)
    {
        int t = x.Length, hd = _c.HiddenSize;
        var ctx = Attention(x, pre + "self_attn.q_proj", pre + "self_attn.k_proj", pre + "self_attn.v_proj");
        var y = new double[t][];
        for (var p = 0; p < t; p++)
        {
            var h = LayerNorm(Sum(x[p], Linear(ctx[p], pre + "self_attn.out_proj", hd, hd)), pre + "self_attn_layer_norm");
            var f = Linear(Linear(h, pre + "fc1", _c.IntermediateSize, hd).Select(Act).ToArray(), pre + "fc2", hd, _c.IntermediateSize);
            y[p] = LayerNorm(Sum(h, f), pre + "final_layer_norm");
        }
        return y;
    }

    // ---- shared pieces ----

    /// <summary>Multi-head softmax(QKᵀ/√d)·V over all T positions (one unpadded sequence, no mask); merged heads.</summary>
    double[][] Attention(double[][] x, string qName, string kName, string vName)
    {
        int t = x.Length, hd = _c.HiddenSize, nh = _c.NumAttentionHeads, d = hd / nh;
        var q = x.Select(r => Linear(r, qName, hd, hd)).ToArray();
        var k = x.Select(r => Linear(r, kName, hd, hd)).ToArray();
        var v = x.Select(r => Linear(r, vName, hd, hd)).ToArray();
        var scale = 1.0 / Math.Sqrt(d);
        var merged = new double[t][];
        for (var qp = 0; qp < t; qp++)
        {
            merged[qp] = new double[hd];
            for (var h = 0; h < nh; h++)
            {
                var scores = new double[t];
                var max = double.NegativeInfinity;
                for (var kp = 0; kp < t; kp++)
                {
                    double s = 0;
                    for (var i = 0; i < d; i++) s += q[qp][h * d + i] * k[kp][h * d + i];
                    scores[kp] = s * scale;
                    max = Math.Max(max, scores[kp]);
                }
                double z = 0;
                for (var kp = 0; kp < t; kp++) z += scores[kp] = Math.Exp(scores[kp] - max);
                for (var kp = 0; kp < t; kp++)
                    for (var i = 0; i < d; i++) merged[qp][h * d + i] += scores[kp] / z * v[kp][h * d + i];
            }
        }
        return merged;
    }

    double Act(double x) => _c.HiddenAct switch
    {
        "gelu" when !_faults.TanhGelu => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        "gelu" or "gelu_new" or "gelu_pytorch_tanh" =>
            0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        "relu" => Math.Max(0, x),
        _ => throw new NotSupportedException($"oracle: activation '{_c.HiddenAct}'."),
    };

    /// <summary>
    /// erf by the all-positive series erf(x) = 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1)): no cancellation, so it is
    /// accurate to double precision wherever it is used (|x| ≤ 6; beyond, erf = ±1 in double).
    /// </summary>
    internal static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        var ax = Math.Abs(x);
        if (ax > 6) return Math.Sign(x);
        double term = ax, sum = ax;
        for (var n = 1; n < 500 && term > sum * 1e-17; n++)
        {
            term *= 2 * ax * ax / (2 * n + 1);
            sum += term;
        }
        return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * Math.Exp(-ax * ax) * sum;
    }

    /// <summary>nn.LayerNorm: (x − mean)/sqrt(var + eps)·γ + β with the biased variance.</summary>
    double[] LayerNorm(double[] x, string name)
    {
        int n = x.Length;
        var g = W(name + ".weight", n);
        var b = W(name + ".bias", n);
        var mean = x.Average();
        var variance = x.Sum(e => (e - mean) * (e - mean)) / n;
        var r = 1.0 / Math.Sqrt(variance + _c.LayerNormEps);
        var y = new double[n];
        for (var i = 0; i < n; i++) y[i] = (x[i] - mean) * r * g[i] + b[i];
        return y;
    }

    /// <summary>nn.Linear: y = W x + b, W stored [out, in]; every encoder Linear has a bias.</summary>
    double[] Linear(double[] x, string name, int outDim, int inDim)
    {
        var w = W(name + ".weight", (long)outDim * inDim);
        var b = W(name + ".bias", outDim);
        var y = new double[outDim];
        for (var o = 0; o < outDim; o++)
        {
            var s = b[o];
            var off = (long)o * inDim;
            for (var i = 0; i < inDim; i++) s += w[off + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    static double[] Sum(double[] a, double[] b)
    {
        var y = new double[a.Length];
        for (var i = 0; i < a.Length; i++) y[i] = a[i] + b[i];
        return y;
    }

    double[] W(string name, long expected)
    {
        if (!_w.TryGetValue(name, out var w)) throw new KeyNotFoundException($"oracle: weight '{name}' is missing.");
        if (w.LongLength != expected) throw new ArgumentException($"oracle: weight '{name}' has {w.LongLength} values, expected {expected}.");
        return w;
    }
}
