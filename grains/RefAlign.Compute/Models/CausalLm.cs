using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>
/// Decoder-only causal LM: the Llama family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) or GPT-NeoX
/// (GPTNeoXForCausalLM, Pythia), chosen by <see cref="CausalLmConfig.Architecture"/>. Parameter names equal the HF names
/// (<c>model.layers.0.self_attn.q_proj.weight</c>, <c>gpt_neox.layers.0.attention.query_key_value.weight</c>, …) so
/// loading and saving are direct.
/// </summary>
public sealed class CausalLm : nn.Module
{
    // Exactly one body and at most one head are set, under their HF names; TorchSharp skips the null fields.
    readonly DecoderBody? model;
    readonly GptNeoXBody? gpt_neox;
    readonly Linear? lm_head;
    readonly Linear? embed_out;
    // Plain floats, not a Tensor field: TorchSharp would register a Tensor field as a persistent buffer.
    readonly float[] _invFreq;

    public CausalLmConfig Config { get; }

    public CausalLm(CausalLmConfig config) : base(config.Architecture)
    {
        Config = config;
        var head = config.TieWordEmbeddings ? null : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        if (config.IsGptNeoX)
        {
            if (config.NumKeyValueHeads != config.NumAttentionHeads || config.RotaryDims < 2 || config.RotaryDims % 2 != 0)
                throw new ArgumentException(
                    $"GPTNeoXForCausalLM needs kv heads = heads ({config.NumKeyValueHeads} vs {config.NumAttentionHeads}) and an even rotary dim count (got {config.RotaryDims}).",
                    nameof(config));
            gpt_neox = new GptNeoXBody(config);
            register_module("gpt_neox", gpt_neox);
            embed_out = head;
            if (embed_out is not null) register_module("embed_out", embed_out);
        }
        else
        {
            model = new DecoderBody(config);
            register_module("model", model);
            lm_head = head;
            if (lm_head is not null) register_module("lm_head", lm_head);
        }
        _invFreq = RotaryEmbedding.InverseFrequencies(config);
    }

    IDecoderBody Body => (IDecoderBody?)model ?? gpt_neox!;
    Linear? Head => lm_head ?? embed_out;

    /// <summary>HF name of the output projection (absent when tied): <c>lm_head.weight</c>, NeoX <c>embed_out.weight</c>.</summary>
    public string OutputWeightName => Config.IsGptNeoX ? "embed_out.weight" : "lm_head.weight";

    /// <summary>
    /// A checkpoint tensor this model may ignore: non-persistent buffers older transformers saved (rotary inv_freq,
    /// NeoX's causal-mask <c>attention.bias</c> / <c>attention.masked_bias</c>) and a tied output projection.
    /// </summary>
    public bool IsIgnorableCheckpointTensor(string name) => IsIgnorable(Config, name);

    static bool IsIgnorable(CausalLmConfig c, string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
        || (c.IsGptNeoX && (name.EndsWith(".attention.bias", StringComparison.Ordinal)
                            || name.EndsWith(".attention.masked_bias", StringComparison.Ordinal)))
        || (c.TieWordEmbeddings && name == (c.IsGptNeoX ? "embed_out.weight" : "lm_head.weight"));

    public Device Device => Body.EmbedWeight.device;
    public ScalarType DType => Body.EmbedWeight.dtype;

    /// <summary>
    /// Logits for <paramref name="inputIds"/> [B, T]. <paramref name="attentionMask"/> [B, S] marks real (1) and
    /// padding (0) tokens over every key position, S = cached + T. Positions count real tokens only, so a left-padded
    /// row computes exactly what it would alone. With <paramref name="lastOnly"/> only the final position's logits
    /// are projected (generation needs no more).
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor attentionMask, KvCache? cache = null, bool lastOnly = false)
    {
        using var scope = NewDisposeScope();
        var h = HiddenStates(inputIds, attentionMask, cache);
        if (lastOnly) h = h.narrow(1, inputIds.shape[1] - 1, 1);
        var logits = DecodeProjection.Linear(h, Head?.weight ?? Body.EmbedWeight, null);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The final (normed) hidden states [B, T, hidden] that <see cref="Forward"/> projects to logits; a sequence
    /// classifier (a reward model's <c>score</c> head) reads them instead.
    /// </summary>
    public Tensor HiddenStates(Tensor inputIds, Tensor attentionMask, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        long t = inputIds.shape[1], s = attentionMask.shape[1];
        var past = s - t;
        if (past != (cache?.Length ?? 0))
            throw new ArgumentException($"attention mask covers {s} keys but cache holds {cache?.Length ?? 0} and input {t}.");
        if (s > Config.MaxPositionEmbeddings)
            throw new ArgumentException(
                $"sequence of {s} tokens exceeds the model context (config.json field 'max_position_embeddings' = {Config.MaxPositionEmbeddings}).");
        var maskLong = attentionMask.to(ScalarType.Int64);
        var positions = (maskLong.cumsum(1) - 1).clamp_min(0).narrow(1, past, t);
        var (cos, sin) = RotaryEmbedding.CosSin(tensor(_invFreq, device: Device), positions, DType);
        var mask = BuildMask(maskLong, t, s);
        return Body.Forward(inputIds, cos, sin, mask, cache).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Logits of packed rows (SFT packing): <paramref name="segmentIds"/> [B, T] numbers the examples of each row 1, 2, …
    /// (0: padding). A token attends only to earlier tokens of its own example and counts its position from that
    /// example's start, so every example computes exactly what it would alone.
    /// </summary>
    public Tensor ForwardPacked(Tensor inputIds, Tensor segmentIds)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], t = inputIds.shape[1];
        var seg = segmentIds.to(ScalarType.Int64);
        var index = arange(t, dtype: ScalarType.Int64, device: Device).unsqueeze(0).expand(b, t);
        // Each token's position is its distance from the first token of its segment.
        var starts = cat([ones([b, 1], ScalarType.Bool, Device), seg.narrow(1, 1, t - 1) != seg.narrow(1, 0, t - 1)], 1);
        var positions = index - where(starts, index, zeros_like(index)).cummax(1).values;
        if (positions.max().item<long>() >= Config.MaxPositionEmbeddings)
            throw new ArgumentException($"a packed example exceeds the model context (config.json field 'max_position_embeddings' = {Config.MaxPositionEmbeddings}).");
        var (cos, sin) = RotaryEmbedding.CosSin(tensor(_invFreq, device: Device), positions, DType);
        var causal = CausalAllowed(t, t, Device).unsqueeze(0);
        var sameExample = (seg.unsqueeze(2) == seg.unsqueeze(1)) & (seg.unsqueeze(1) > 0);
        var mask = MaskFrom((causal & sameExample).unsqueeze(1));
        var h = Body.Forward(inputIds, cos, sin, mask, null);
        var logits = Head is { } head ? head.forward(h) : nn.functional.linear(h, Body.EmbedWeight);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Full pass with no cache: mask [B, T] over the inputs themselves.</summary>
    public Tensor Forward(Tensor inputIds) => Forward(inputIds, ones_like(inputIds));

    Tensor BuildMask(Tensor attentionMask, long t, long s)
    {
        var real = attentionMask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1);
        // A one-token decode step sees every earlier key: no causal term to build (fewer ops per generated token).
        if (t == 1 && (Config.SlidingWindow is not int w || w >= s)) return MaskFrom(real);
        return MaskFrom(CausalAllowed(t, s, attentionMask.device).unsqueeze(0).unsqueeze(0) & real);
    }

    /// <summary>[T, S]: query i (the last T of S positions) may see key j — causal, within the sliding window if any.</summary>
    Tensor CausalAllowed(long t, long s, Device dev)
    {
        var qpos = arange(s - t, s, dtype: ScalarType.Int64, device: dev).unsqueeze(1);
        var kpos = arange(0, s, dtype: ScalarType.Int64, device: dev).unsqueeze(0);
        var allowed = kpos <= qpos;
        return Config.SlidingWindow is int w ? allowed & (qpos - kpos < w) : allowed;
    }

    /// <summary>The additive attention mask of <paramref name="allowed"/> [B, 1, T, S].</summary>
    Tensor MaskFrom(Tensor allowed)
    {
        // A large finite negative (as HF does) keeps fully masked padding rows finite instead of NaN.
        // (Filled, then cleared where allowed: ops every device has kernels for, PyTorch's meta device included.)
        var mask = full(allowed.shape, MinValue(DType), DType, allowed.device).masked_fill(allowed, 0.0);
        // Tiled once here for the grouped-query layout every layer uses.
        return Config.KeyValueGroups > 1 ? mask.repeat(1, 1, Config.KeyValueGroups, 1) : mask;
    }

    static double MinValue(ScalarType t) => t switch
    {
        ScalarType.Float16 => -65504.0,
        ScalarType.BFloat16 => -3.3895313892515355e38,
        ScalarType.Float64 => double.MinValue,
        _ => float.MinValue,
    };

    public KvCache NewCache(long batch, long capacity) => new(Config, batch, capacity, DType, Device);

    /// <summary>Draws HF-style initial weights (normal(0, initializer_range), norms 1, biases 0) from a seed.</summary>
    public void InitializeWeights(long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else
            {
                using var r = randn(p.shape, ScalarType.Float32, generator: gen);
                p.copy_(r * Config.InitializerRange);
            }
        }
    }

    /// <summary>
    /// Loads an HF folder: config.json + model.safetensors (or sharded index), checked tensor by tensor. The model is
    /// moved to <paramref name="device"/> first and each tensor is read straight into its parameter there, so no full
    /// host copy of the weights is kept.
    /// </summary>
    public static CausalLm FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var config = CausalLmConfig.Load(folder);
        // Before the module exists: a config.json that claims more than this machine holds is a sentence, not an OOM kill.
        ModelFootprint.RequireWithin(ModelFootprint.WeightBytes(ModelFootprint.Parameters(config), ModelFootprint.BytesPer(dtype)), ModelFootprint.HostMemoryBytes,
            $"{Path.Combine(folder, "config.json")}: the model's weights in {dtype} need", ModelFootprint.Sizes(config), "this machine's memory");
        // Every file of the folder (tokenizer files too) resolves inside a silo's read roots.
        Files.ReadRoots.Current.CheckFolder(folder);
        var model = new CausalLm(config);
        if (dtype != ScalarType.Float32) model.to(dtype);
        if (device is not null) model.to(device);
        RefuseExtras(model, folder, ModelWeights.LoadInto(model, folder));
        model.eval();
        return model;
    }

    /// <summary>
    /// What <see cref="FromPretrained"/> checks (config.json, every tensor's presence and shape, no stray tensors), with
    /// the same errors, from config.json and the weight files' headers alone: no module is built and no weight is read,
    /// so the cost does not depend on the size the config claims. Returns the config.
    /// </summary>
    public static CausalLmConfig CheckPretrained(string folder)
    {
        var config = CausalLmConfig.Load(folder);
        RefuseExtras(config, folder, ModelWeights.CheckShapes(folder, ModelFootprint.Tensors(config)));
        return config;
    }

    static void RefuseExtras(CausalLm model, string folder, IReadOnlyList<string> unexpected) => RefuseExtras(model.Config, folder, unexpected);

    static void RefuseExtras(CausalLmConfig config, string folder, IReadOnlyList<string> unexpected)
    {
        var extra = unexpected.Where(n => !IsIgnorable(config, n)).ToList();
        if (extra.Count > 0)
            throw new ModelFormatException(
                $"{folder}: weights contain tensors that {config.Architecture} with this config.json does not have: {string.Join(", ", extra.Take(5))}{(extra.Count > 5 ? ", …" : "")}.");
    }

    /// <summary>Writes config.json, generation_config.json and the weights (sharded above <paramref name="maxShardBytes"/>).</summary>
    public void SavePretrained(string folder, long maxShardBytes = 5L << 30)
    {
        Directory.CreateDirectory(folder);
        (Config with { TorchDtype = DTypeName(DType) }).Save(folder);
        var gen = new JsonObject { ["_from_model_config"] = true };
        if (Config.BosTokenId is int b) gen["bos_token_id"] = b;
        if (Config.EosTokenIds.Count == 1) gen["eos_token_id"] = Config.EosTokenIds[0];
        else if (Config.EosTokenIds.Count > 1) gen["eos_token_id"] = new JsonArray([.. Config.EosTokenIds.Select(e => (JsonNode)e)]);
        if (Config.PadTokenId is int p) gen["pad_token_id"] = p;
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), gen.ToJsonString(new() { WriteIndented = true }));
        var tensors = named_parameters().ToDictionary(kv => kv.name, kv => (Tensor)kv.parameter);
        ModelWeights.Save(folder, tensors, maxShardBytes);
    }

    static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

}

/// <summary>What <see cref="CausalLm"/> needs of its body (Llama-family <c>model</c> or NeoX <c>gpt_neox</c>).</summary>
public interface IDecoderBody
{
    /// <summary>The input embedding table [vocab, hidden] (also the output projection when tied).</summary>
    Tensor EmbedWeight { get; }

    /// <summary>Final-normed hidden states [B, T, hidden] for <paramref name="inputIds"/> [B, T].</summary>
    Tensor Forward(Tensor inputIds, Tensor cos, Tensor sin, Tensor mask, KvCache? cache);
}

/// <summary>The <c>model.</c> prefix of HF checkpoints: embeddings, layers, final norm.</summary>
public sealed class DecoderBody : nn.Module, IDecoderBody
{
    readonly Embedding embed_tokens;
    readonly ModuleList<DecoderLayer> layers;
    readonly RmsNorm norm;

    public DecoderBody(CausalLmConfig c) : base("model")
    {
        embed_tokens = nn.Embedding(c.VocabSize, c.HiddenSize);
        layers = nn.ModuleList([.. Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new DecoderLayer(c))]);
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        register_module("embed_tokens", embed_tokens);
        register_module("layers", layers);
        register_module("norm", norm);
    }

    public Tensor EmbedWeight => embed_tokens.weight!;

    public Tensor Forward(Tensor inputIds, Tensor cos, Tensor sin, Tensor mask, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var h = embed_tokens.forward(inputIds);
        for (var i = 0; i < layers.Count; i++)
            h = layers[i].Forward(h, cos, sin, mask, cache?[i]);
        return norm.Forward(h).MoveToOuterDisposeScope();
    }
}
