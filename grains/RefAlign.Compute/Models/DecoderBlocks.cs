using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

// Module fields carry the HF names: TorchSharp registers fields by reflection as well, and both must agree.

/// <summary>
/// What an adapter (LoRA) adds to one projection's output: <c>y = linear(x) + Delta(x)</c> while
/// <see cref="Active"/>. Implementations must not be <see cref="nn.Module"/>s held in module fields.
/// </summary>
public interface IProjectionAdapter
{
    bool Active { get; }
    Tensor Delta(Tensor x);
}

/// <summary>
/// Hook on one projection that adapters fill in. A plain class (not a Module, holding no tensors), so TorchSharp's
/// field reflection never registers it and state_dict() keeps exactly the HF names.
/// </summary>
public sealed class AdapterSlot
{
    public IProjectionAdapter? Adapter { get; set; }

    /// <summary><c>linear(x)</c>, plus the adapter's delta when one is attached and active.</summary>
    public Tensor Forward(Linear linear, Tensor x)
    {
        var y = DecodeProjection.Linear(x, linear.weight!, linear.bias);
        var a = Adapter;
        if (a is null || !a.Active) return y;
        using var delta = a.Delta(x);
        using (y) return y + delta;
    }
}

/// <summary>RMSNorm as in HF Llama: normalise in float32, scale, cast back.</summary>
public sealed class RmsNorm : nn.Module
{
    readonly Parameter weight;
    readonly double _eps;

    public RmsNorm(long dim, double eps) : base(nameof(RmsNorm))
    {
        _eps = eps;
        weight = new Parameter(ones(dim));
        register_parameter("weight", weight);
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // Skip the casts for float32 inputs: decoding is dominated by per-op overhead.
        var isFloat = x.dtype == ScalarType.Float32;
        var h = isFloat ? x : x.to(ScalarType.Float32);
        var variance = h.pow(2).mean([-1L], keepdim: true);
        h = h * (variance + _eps).rsqrt();
        return (weight * (isFloat ? h : h.to(x.dtype))).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) * up(x)).</summary>
public sealed class GatedMlp : nn.Module
{
    readonly Linear gate_proj, up_proj, down_proj;
    readonly AdapterSlot _gate = new(), _up = new(), _down = new();

    /// <summary>Adapter hooks by projection name (gate_proj, up_proj, down_proj).</summary>
    public IReadOnlyDictionary<string, AdapterSlot> AdapterSlots { get; }

    public GatedMlp(CausalLmConfig c) : base(nameof(GatedMlp))
    {
        AdapterSlots = new Dictionary<string, AdapterSlot>(StringComparer.Ordinal)
        {
            ["gate_proj"] = _gate, ["up_proj"] = _up, ["down_proj"] = _down,
        };
        gate_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, c.MlpBias);
        up_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, c.MlpBias);
        down_proj = nn.Linear(c.IntermediateSize, c.HiddenSize, c.MlpBias);
        register_module("gate_proj", gate_proj);
        register_module("up_proj", up_proj);
        register_module("down_proj", down_proj);
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return _down.Forward(down_proj, nn.functional.silu(_gate.Forward(gate_proj, x)) * _up.Forward(up_proj, x)).MoveToOuterDisposeScope();
    }
}

/// <summary>Grouped-query self-attention with rotary positions and an optional KV cache.</summary>
public sealed class SelfAttention : nn.Module
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly AdapterSlot _q = new(), _k = new(), _v = new(), _o = new();
    readonly CausalLmConfig _c;

    /// <summary>Adapter hooks by projection name (q_proj, k_proj, v_proj, o_proj).</summary>
    public IReadOnlyDictionary<string, AdapterSlot> AdapterSlots { get; }

    public SelfAttention(CausalLmConfig c) : base(nameof(SelfAttention))
    {
        AdapterSlots = new Dictionary<string, AdapterSlot>(StringComparer.Ordinal)
        {
            ["q_proj"] = _q, ["k_proj"] = _k, ["v_proj"] = _v, ["o_proj"] = _o,
        };
        _c = c;
        q_proj = nn.Linear(c.HiddenSize, c.NumAttentionHeads * c.HeadDim, c.QkvBias);
        k_proj = nn.Linear(c.HiddenSize, c.NumKeyValueHeads * c.HeadDim, c.QkvBias);
        v_proj = nn.Linear(c.HiddenSize, c.NumKeyValueHeads * c.HeadDim, c.QkvBias);
        o_proj = nn.Linear(c.NumAttentionHeads * c.HeadDim, c.HiddenSize, c.OutputBias);
        register_module("q_proj", q_proj);
        register_module("k_proj", k_proj);
        register_module("v_proj", v_proj);
        register_module("o_proj", o_proj);
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="cos">[B, 1, T, head_dim]</param>
    /// <param name="mask">additive mask [B, 1, n_rep·T, S] over all S keys (cached + current), tiled per query group</param>
    /// <param name="cache">this layer's cache slot, or null for a full pass</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor mask, LayerKvCache? cache)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], d = _c.HeadDim;
        var q = _q.Forward(q_proj, x).view(b, t, _c.NumAttentionHeads, d).transpose(1, 2);
        var k = _k.Forward(k_proj, x).view(b, t, _c.NumKeyValueHeads, d).transpose(1, 2);
        var v = _v.Forward(v_proj, x).view(b, t, _c.NumKeyValueHeads, d).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, cos, sin);
        k = RotaryEmbedding.Apply(k, cos, sin);
        if (cache is not null) (k, v) = cache.Append(k, v);
        // Grouped-query attention without copying K/V per head: the n_rep query heads that share a kv head are
        // stacked along the query axis ([B, kv, n_rep·T, D]); the mask arrives tiled to match (see CausalLm).
        var g = _c.KeyValueGroups;
        if (g > 1) q = q.reshape(b, _c.NumKeyValueHeads, g * t, d);
        var attn = nn.functional.scaled_dot_product_attention(q, k, v, mask);
        if (g > 1) attn = attn.reshape(b, _c.NumAttentionHeads, t, d);
        var merged = attn.transpose(1, 2).reshape(b, t, _c.NumAttentionHeads * d);
        return _o.Forward(o_proj, merged).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(x)).</summary>
public sealed class DecoderLayer : nn.Module
{
    readonly SelfAttention self_attn;
    readonly GatedMlp mlp;
    readonly RmsNorm input_layernorm, post_attention_layernorm;

    public DecoderLayer(CausalLmConfig c) : base(nameof(DecoderLayer))
    {
        self_attn = new SelfAttention(c);
        mlp = new GatedMlp(c);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        register_module("self_attn", self_attn);
        register_module("mlp", mlp);
        register_module("input_layernorm", input_layernorm);
        register_module("post_attention_layernorm", post_attention_layernorm);
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor mask, LayerKvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.Forward(input_layernorm.Forward(x), cos, sin, mask, cache);
        return (h + mlp.Forward(post_attention_layernorm.Forward(h))).MoveToOuterDisposeScope();
    }
}
