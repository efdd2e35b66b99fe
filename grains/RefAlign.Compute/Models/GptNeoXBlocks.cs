using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

// GPTNeoXForCausalLM (Pythia) as transformers' modeling_gpt_neox defines it. Module fields carry the HF names
// (gpt_neox.layers.0.attention.query_key_value.weight, …): TorchSharp registers fields by reflection as well.

/// <summary>GELU MLP: dense_4h_to_h(act(dense_h_to_4h(x))), both projections with bias.</summary>
public sealed class GptNeoXMlp : nn.Module
{
    readonly Linear dense_h_to_4h, dense_4h_to_h;
    readonly AdapterSlot _up = new(), _down = new();
    readonly bool _tanh;

    /// <summary>Adapter hooks by projection name (dense_h_to_4h, dense_4h_to_h).</summary>
    public IReadOnlyDictionary<string, AdapterSlot> AdapterSlots { get; }

    public GptNeoXMlp(CausalLmConfig c) : base(nameof(GptNeoXMlp))
    {
        AdapterSlots = new Dictionary<string, AdapterSlot>(StringComparer.Ordinal)
        {
            ["dense_h_to_4h"] = _up, ["dense_4h_to_h"] = _down,
        };
        // "gelu" is the exact (erf) GELU; gelu_new / gelu_fast / gelu_pytorch_tanh are the tanh approximation.
        _tanh = c.HiddenAct != "gelu";
        dense_h_to_4h = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: true);
        dense_4h_to_h = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: true);
        register_module("dense_h_to_4h", dense_h_to_4h);
        register_module("dense_4h_to_h", dense_4h_to_h);
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = _up.Forward(dense_h_to_4h, x);
        h = _tanh ? GeluTanh(h) : nn.functional.gelu(h);
        return _down.Forward(dense_4h_to_h, h).MoveToOuterDisposeScope();
    }

    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), HF's NewGELUActivation.
    static Tensor GeluTanh(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = (x + x.pow(3) * 0.044715) * Math.Sqrt(2.0 / Math.PI);
        return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Multi-head self-attention with a fused query_key_value projection laid out per head as [q, k, v], partial rotary
/// positions on the first rotary_dims of each head, and an optional KV cache (kv heads = heads: no GQA in NeoX).
/// </summary>
public sealed class GptNeoXAttention : nn.Module
{
    readonly Linear query_key_value, dense;
    readonly AdapterSlot _qkv = new(), _dense = new();
    readonly CausalLmConfig _c;

    /// <summary>Adapter hooks by projection name (query_key_value, dense).</summary>
    public IReadOnlyDictionary<string, AdapterSlot> AdapterSlots { get; }

    public GptNeoXAttention(CausalLmConfig c) : base(nameof(GptNeoXAttention))
    {
        AdapterSlots = new Dictionary<string, AdapterSlot>(StringComparer.Ordinal)
        {
            ["query_key_value"] = _qkv, ["dense"] = _dense,
        };
        _c = c;
        query_key_value = nn.Linear(c.HiddenSize, 3L * c.NumAttentionHeads * c.HeadDim, c.QkvBias);
        dense = nn.Linear((long)c.NumAttentionHeads * c.HeadDim, c.HiddenSize, c.OutputBias);
        register_module("query_key_value", query_key_value);
        register_module("dense", dense);
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="cos">[B, 1, T, rotary_dims]</param>
    /// <param name="mask">additive mask [B, 1, T, S] over all S keys (cached + current)</param>
    /// <param name="cache">this layer's cache slot, or null for a full pass</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor mask, LayerKvCache? cache)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], d = _c.HeadDim, nh = _c.NumAttentionHeads;
        // [B, T, heads, 3·D] → [B, heads, T, 3·D]; each head's slice holds its q, k and v in that order.
        var qkv = _qkv.Forward(query_key_value, x).view(b, t, nh, 3 * d).transpose(1, 2);
        var q = RotaryEmbedding.ApplyPartial(qkv.narrow(-1, 0, d), cos, sin);
        var k = RotaryEmbedding.ApplyPartial(qkv.narrow(-1, d, d), cos, sin);
        var v = qkv.narrow(-1, 2 * d, d);
        if (cache is not null) (k, v) = cache.Append(k, v);
        // Default scale 1/√head_dim, as GPTNeoXAttention.
        var attn = nn.functional.scaled_dot_product_attention(q, k, v, mask);
        var merged = attn.transpose(1, 2).reshape(b, t, nh * d);
        return _dense.Forward(dense, merged).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Pre-LayerNorm NeoX layer. Parallel residual: x + attn(ln1(x)) + mlp(ln2(x)); sequential: h = x + attn(ln1(x)),
/// then h + mlp(ln2(h)).
/// </summary>
public sealed class GptNeoXLayer : nn.Module
{
    readonly LayerNorm input_layernorm, post_attention_layernorm;
    readonly GptNeoXAttention attention;
    readonly GptNeoXMlp mlp;
    readonly bool _parallel;

    public GptNeoXLayer(CausalLmConfig c) : base(nameof(GptNeoXLayer))
    {
        _parallel = c.UseParallelResidual;
        input_layernorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        post_attention_layernorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        attention = new GptNeoXAttention(c);
        mlp = new GptNeoXMlp(c);
        register_module("input_layernorm", input_layernorm);
        register_module("post_attention_layernorm", post_attention_layernorm);
        register_module("attention", attention);
        register_module("mlp", mlp);
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor mask, LayerKvCache? cache)
    {
        using var scope = NewDisposeScope();
        var attn = attention.Forward(input_layernorm.forward(x), cos, sin, mask, cache);
        // Same summation order as transformers (mlp + attn + x), so float rounding matches it too.
        if (_parallel)
            return (mlp.Forward(post_attention_layernorm.forward(x)) + attn + x).MoveToOuterDisposeScope();
        var h = attn + x;
        return (mlp.Forward(post_attention_layernorm.forward(h)) + h).MoveToOuterDisposeScope();
    }
}

/// <summary>The <c>gpt_neox.</c> prefix of HF checkpoints: embed_in, layers, final_layer_norm.</summary>
public sealed class GptNeoXBody : nn.Module, IDecoderBody
{
    readonly Embedding embed_in;
    readonly ModuleList<GptNeoXLayer> layers;
    readonly LayerNorm final_layer_norm;

    public GptNeoXBody(CausalLmConfig c) : base("gpt_neox")
    {
        embed_in = nn.Embedding(c.VocabSize, c.HiddenSize);
        layers = nn.ModuleList([.. Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new GptNeoXLayer(c))]);
        final_layer_norm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        register_module("embed_in", embed_in);
        register_module("layers", layers);
        register_module("final_layer_norm", final_layer_norm);
    }

    public Tensor EmbedWeight => embed_in.weight!;

    public Tensor Forward(Tensor inputIds, Tensor cos, Tensor sin, Tensor mask, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = embed_in.forward(inputIds);
        for (var i = 0; i < layers.Count; i++)
            h = layers[i].Forward(h, cos, sin, mask, cache?[i]);
        return final_layer_norm.forward(h).MoveToOuterDisposeScope();
    }
}
