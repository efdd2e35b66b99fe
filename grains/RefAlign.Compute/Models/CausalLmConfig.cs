using System.Text.Json;
using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using static RefAlign.Compute.Formats.HfConfigJson;

namespace RefAlign.Compute.Models;

/// <summary>RoPE frequency scaling as HF configs spell it (<c>rope_scaling</c>); only the types we implement.</summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// The decoder-only configuration of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and GPTNeoXForCausalLM
/// (Pythia), read from and written to HF <c>config.json</c> with the same field names, so our folders load in
/// <c>transformers</c> and theirs here.
/// </summary>
public sealed record CausalLmConfig
{
    public const string GptNeoXArchitecture = "GPTNeoXForCausalLM";

    public static readonly IReadOnlyList<string> SupportedArchitectures =
        ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", GptNeoXArchitecture];

    /// <summary>The feed-forward activations GPT-NeoX configs may name: exact (erf) GELU and its tanh approximations.</summary>
    public static readonly IReadOnlyList<string> GptNeoXActivations = ["gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh"];

    public string Architecture { get; init; } = "LlamaForCausalLM";
    public int VocabSize { get; init; }
    public int HiddenSize { get; init; }
    public int IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int NumKeyValueHeads { get; init; }
    public int HeadDim { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q/k/v projections (Qwen2 always; Llama when <c>attention_bias</c>).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on the output projection (Llama's <c>attention_bias</c> covers it; Qwen2 has none).</summary>
    public bool OutputBias { get; init; }
    public bool MlpBias { get; init; }
    /// <summary>Mistral-style local attention window; null = full causal attention.</summary>
    public int? SlidingWindow { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }
    public double InitializerRange { get; init; } = 0.02;
    public string TorchDtype { get; init; } = "float32";

    /// <summary>HF <c>hidden_act</c>: "silu" for the Llama family; one of <see cref="GptNeoXActivations"/> for NeoX.</summary>
    public string HiddenAct { get; init; } = "silu";
    /// <summary>NeoX <c>rotary_pct</c>: the leading fraction of each head's dims that gets rotary positions.</summary>
    public double RotaryPct { get; init; } = 1.0;
    /// <summary>NeoX <c>use_parallel_residual</c>: x + attn(ln1(x)) + mlp(ln2(x)) instead of two sequential residuals.</summary>
    public bool UseParallelResidual { get; init; } = true;
    /// <summary>NeoX <c>layer_norm_eps</c> (LayerNorm with bias; the Llama family uses <see cref="RmsNormEps"/>).</summary>
    public double LayerNormEps { get; init; } = 1e-5;

    public bool IsGptNeoX => Architecture == GptNeoXArchitecture;

    /// <summary>Rotated dims per head: <c>int(head_dim * rotary_pct)</c> for NeoX, all of them otherwise.</summary>
    public int RotaryDims => IsGptNeoX ? (int)(HeadDim * RotaryPct) : HeadDim;

    public int KeyValueGroups => NumAttentionHeads / NumKeyValueHeads;

    public static CausalLmConfig Load(string folder)
    {
        var (root, path) = HfConfigJson.Load(folder);
        return Parse(root, path);
    }

    public static CausalLmConfig Parse(JsonObject j, string path)
    {
        var arch = j["architectures"] is JsonArray a && a.Count > 0 ? a[0]?.GetValue<string>() : null;
        if (arch is null) throw new ModelFormatException($"{path}: field 'architectures' is missing.");
        if (!SupportedArchitectures.Contains(arch))
            throw new ModelFormatException(
                $"{path}: field 'architectures' is '{arch}'; supported: {string.Join(", ", SupportedArchitectures)}.");
        if (arch == GptNeoXArchitecture) return ParseGptNeoX(j, path);
        var act = Str(j, "hidden_act", null) ?? "silu";
        if (act != "silu") throw new ModelFormatException($"{path}: field 'hidden_act' is '{act}'; only 'silu' is supported.");

        var heads = Size(j, "num_attention_heads", path, MaxHeads);
        var hidden = Size(j, "hidden_size", path, MaxHidden);
        var kvHeads = Size(j, "num_key_value_heads", path, MaxHeads, heads);
        if (heads % kvHeads != 0)
            throw new ModelFormatException($"{path}: field 'num_key_value_heads' ({kvHeads}) must divide num_attention_heads ({heads}).");
        if (j["head_dim"] is null && hidden < heads)
            throw new ModelFormatException($"{path}: field 'hidden_size' ({hidden}) is smaller than num_attention_heads ({heads}), leaving no head_dim.");
        var headDim = Size(j, "head_dim", path, MaxHeadDim, hidden / heads);
        var attnBias = Bool(j, "attention_bias", false);
        var isQwen = arch == "Qwen2ForCausalLM";
        int? window = null;
        if ((arch == "MistralForCausalLM" || (isQwen && Bool(j, "use_sliding_window", false))) && j["sliding_window"] is not null)
            window = Size(j, "sliding_window", path, int.MaxValue);

        return new CausalLmConfig
        {
            Architecture = arch,
            VocabSize = Size(j, "vocab_size", path, MaxVocab),
            HiddenSize = hidden,
            IntermediateSize = Size(j, "intermediate_size", path, MaxIntermediate),
            NumHiddenLayers = Size(j, "num_hidden_layers", path, MaxLayers),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            MaxPositionEmbeddings = Size(j, "max_position_embeddings", path, MaxPositions, 2048),
            RmsNormEps = Dbl(j, "rms_norm_eps", 1e-6),
            RopeTheta = Dbl(j, "rope_theta", 10000),
            RopeScaling = ParseRopeScaling(j["rope_scaling"] as JsonObject, path),
            TieWordEmbeddings = Bool(j, "tie_word_embeddings", isQwen),
            QkvBias = isQwen || attnBias,
            OutputBias = !isQwen && attnBias,
            MlpBias = Bool(j, "mlp_bias", false),
            SlidingWindow = window,
            BosTokenId = Int(j, "bos_token_id", path),
            EosTokenIds = IntList(j["eos_token_id"]),
            PadTokenId = Int(j, "pad_token_id", path),
            InitializerRange = Dbl(j, "initializer_range", 0.02),
            TorchDtype = Str(j, "torch_dtype", null) ?? "float32",
        };
    }

    static RopeScaling? ParseRopeScaling(JsonObject? r, string path)
    {
        if (r is null) return null;
        var type = Str(r, "rope_type", null) ?? Str(r, "type", null) ?? "default";
        return type switch
        {
            "default" => null,
            "linear" => new RopeScaling("linear", Dbl(r, "factor", 1)),
            "llama3" => new RopeScaling("llama3", Dbl(r, "factor", 8), Dbl(r, "low_freq_factor", 1),
                Dbl(r, "high_freq_factor", 4), Int(r, "original_max_position_embeddings", path) ?? 8192),
            _ => throw new ModelFormatException(
                $"{path}: field 'rope_scaling.rope_type' is '{type}'; supported: default, linear, llama3."),
        };
    }

    public JsonObject ToJson()
    {
        if (IsGptNeoX) return GptNeoXJson();
        var isQwen = Architecture == "Qwen2ForCausalLM";
        var j = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture),
            ["model_type"] = Architecture switch { "MistralForCausalLM" => "mistral", "Qwen2ForCausalLM" => "qwen2", _ => "llama" },
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = HfJsonFloat.Of(RmsNormEps),
            ["rope_theta"] = HfJsonFloat.Of(RopeTheta),
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["initializer_range"] = HfJsonFloat.Of(InitializerRange),
            ["torch_dtype"] = TorchDtype,
            ["use_cache"] = true,
            ["attention_dropout"] = HfJsonFloat.Of(0.0),
        };
        if (!isQwen) { j["attention_bias"] = QkvBias; j["mlp_bias"] = MlpBias; }
        if (SlidingWindow is int w) { j["sliding_window"] = w; if (isQwen) j["use_sliding_window"] = true; }
        else if (isQwen) j["use_sliding_window"] = false;
        if (RopeScaling is { } rs)
        {
            var o = new JsonObject { ["rope_type"] = rs.Type, ["factor"] = HfJsonFloat.Of(rs.Factor) };
            if (rs.Type == "llama3")
            {
                o["low_freq_factor"] = HfJsonFloat.Of(rs.LowFreqFactor);
                o["high_freq_factor"] = HfJsonFloat.Of(rs.HighFreqFactor);
                o["original_max_position_embeddings"] = rs.OriginalMaxPositionEmbeddings;
            }
            j["rope_scaling"] = o;
        }
        if (BosTokenId is int b) j["bos_token_id"] = b;
        if (EosTokenIds.Count == 1) j["eos_token_id"] = EosTokenIds[0];
        else if (EosTokenIds.Count > 1) j["eos_token_id"] = new JsonArray([.. EosTokenIds.Select(e => (JsonNode)e)]);
        if (PadTokenId is int p) j["pad_token_id"] = p;
        return j;
    }

    // GPTNeoXConfig's fields and defaults (transformers); newer configs nest rope_theta and partial_rotary_factor in
    // rope_parameters, which wins over the legacy rotary_emb_base / rotary_pct as it does there.
    static CausalLmConfig ParseGptNeoX(JsonObject j, string path)
    {
        var act = Str(j, "hidden_act", null) ?? "gelu";
        if (!GptNeoXActivations.Contains(act))
            throw new ModelFormatException(
                $"{path}: field 'hidden_act' is '{act}'; GPTNeoXForCausalLM supports {string.Join(", ", GptNeoXActivations)}.");
        var heads = Size(j, "num_attention_heads", path, MaxHeads);
        var hidden = Size(j, "hidden_size", path, MaxHidden);
        if (hidden % heads != 0)
            throw new ModelFormatException($"{path}: field 'hidden_size' ({hidden}) must be a multiple of num_attention_heads ({heads}).");
        var headDim = hidden / heads;
        var rope = j["rope_parameters"] as JsonObject;
        double? Num(JsonObject? o, string f) => o?[f] is JsonValue v && v.TryGetValue<double>(out var d) ? d : null;
        var pct = Num(rope, "partial_rotary_factor") ?? Num(j, "rotary_pct") ?? Num(j, "partial_rotary_factor") ?? 0.25;
        var rotary = (int)(headDim * pct);
        if (!(pct > 0 && pct <= 1) || rotary < 2 || rotary % 2 != 0)
            throw new ModelFormatException(
                $"{path}: field 'rotary_pct' ({pct}) must give an even number of rotary dims of head_dim {headDim} (got {rotary}).");
        var attnBias = Bool(j, "attention_bias", true);
        var eos = IntList(j["eos_token_id"]);
        return new CausalLmConfig
        {
            Architecture = GptNeoXArchitecture,
            VocabSize = Size(j, "vocab_size", path, MaxVocab),
            HiddenSize = hidden,
            IntermediateSize = Size(j, "intermediate_size", path, MaxIntermediate),
            NumHiddenLayers = Size(j, "num_hidden_layers", path, MaxLayers),
            NumAttentionHeads = heads,
            NumKeyValueHeads = heads,
            HeadDim = headDim,
            MaxPositionEmbeddings = Size(j, "max_position_embeddings", path, MaxPositions, 2048),
            LayerNormEps = Dbl(j, "layer_norm_eps", 1e-5),
            RopeTheta = Num(rope, "rope_theta") ?? Num(j, "rotary_emb_base") ?? Num(j, "rope_theta") ?? 10000,
            RopeScaling = ParseRopeScaling(j["rope_scaling"] as JsonObject ?? rope, path),
            RotaryPct = pct,
            UseParallelResidual = Bool(j, "use_parallel_residual", true),
            HiddenAct = act,
            TieWordEmbeddings = Bool(j, "tie_word_embeddings", false),
            QkvBias = attnBias,
            OutputBias = attnBias,
            MlpBias = true,
            BosTokenId = j.ContainsKey("bos_token_id") ? Int(j, "bos_token_id", path) : 0,
            EosTokenIds = j.ContainsKey("eos_token_id") ? eos : [2],
            PadTokenId = Int(j, "pad_token_id", path),
            InitializerRange = Dbl(j, "initializer_range", 0.02),
            TorchDtype = Str(j, "torch_dtype", null) ?? "float32",
        };
    }

    // The legacy rope names (rotary_emb_base, rotary_pct) are the ones transformers 4 reads; 5 still accepts them.
    JsonObject GptNeoXJson()
    {
        var j = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture),
            ["model_type"] = "gpt_neox",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["hidden_act"] = HiddenAct,
            ["rotary_pct"] = HfJsonFloat.Of(RotaryPct),
            ["rotary_emb_base"] = HfJsonFloat.Of(RopeTheta),
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["layer_norm_eps"] = HfJsonFloat.Of(LayerNormEps),
            ["use_parallel_residual"] = UseParallelResidual,
            ["attention_bias"] = QkvBias,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["initializer_range"] = HfJsonFloat.Of(InitializerRange),
            ["torch_dtype"] = TorchDtype,
            ["use_cache"] = true,
            ["attention_dropout"] = HfJsonFloat.Of(0.0),
            ["hidden_dropout"] = HfJsonFloat.Of(0.0),
        };
        if (RopeScaling is { } rs)
            j["rope_scaling"] = new JsonObject { ["rope_type"] = rs.Type, ["type"] = rs.Type, ["factor"] = HfJsonFloat.Of(rs.Factor) };
        // Absent ids would mean GPTNeoXConfig's defaults (0 and 2) in transformers, so null is written explicitly.
        j["bos_token_id"] = BosTokenId;
        j["eos_token_id"] = EosTokenIds.Count switch
        {
            0 => null,
            1 => EosTokenIds[0],
            _ => new JsonArray([.. EosTokenIds.Select(e => (JsonNode)e)]),
        };
        if (PadTokenId is int p) j["pad_token_id"] = p;
        return j;
    }

    public void Save(string folder) =>
        File.WriteAllText(Path.Combine(folder, "config.json"), ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    static IReadOnlyList<int> IntList(JsonNode? n) => n switch
    {
        JsonArray a => [.. a.Select(x => x!.GetValue<int>())],
        JsonValue v when v.TryGetValue<int>(out var i) => [i],
        _ => [],
    };
}
