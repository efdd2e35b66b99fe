using System.Text.Json;
using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using static RefAlign.Compute.Formats.HfConfigJson;

namespace RefAlign.Compute.Encoders;

/// <summary>
/// The encoder configuration BERTScore needs, read from and written to HF <c>config.json</c>. BERT and RoBERTa use
/// <c>hidden_size</c>/<c>num_hidden_layers</c>/…; BART uses <c>d_model</c>/<c>encoder_layers</c>/… — both are mapped onto
/// the same properties here. <see cref="MaxPositionEmbeddings"/> is the config value: for RoBERTa it already includes the
/// pad offset (514), for BART the table has two more rows than it (1024 → 1026).
/// </summary>
public sealed record EncoderConfig
{
    static readonly Dictionary<string, string> ArchitectureTypes = new(StringComparer.Ordinal)
    {
        ["BertModel"] = "bert", ["BertForMaskedLM"] = "bert", ["BertForPreTraining"] = "bert",
        ["BertForSequenceClassification"] = "bert", ["BertLMHeadModel"] = "bert", ["BertForNextSentencePrediction"] = "bert",
        ["BertForTokenClassification"] = "bert", ["BertForQuestionAnswering"] = "bert", ["BertForMultipleChoice"] = "bert",
        ["RobertaModel"] = "roberta", ["RobertaForMaskedLM"] = "roberta", ["RobertaForSequenceClassification"] = "roberta",
        ["RobertaForCausalLM"] = "roberta", ["RobertaForTokenClassification"] = "roberta",
        ["RobertaForQuestionAnswering"] = "roberta", ["RobertaForMultipleChoice"] = "roberta",
        ["BartModel"] = "bart", ["BartForConditionalGeneration"] = "bart", ["BartForSequenceClassification"] = "bart",
        ["BartForQuestionAnswering"] = "bart",
    };

    public static IReadOnlyCollection<string> SupportedArchitectures => ArchitectureTypes.Keys;

    /// <summary>Activations as transformers' ACT2FN names them; "gelu" is the exact erf form.</summary>
    public static readonly IReadOnlyList<string> SupportedActivations = ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"];

    public string Architecture { get; init; } = "BertModel";
    /// <summary>bert, roberta or bart.</summary>
    public string ModelType { get; init; } = "bert";
    public int VocabSize { get; init; }
    public int HiddenSize { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int IntermediateSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary>Rows of token_type_embeddings (BERT 2, RoBERTa 1, BART 0 = none).</summary>
    public int TypeVocabSize { get; init; } = 2;
    public double LayerNormEps { get; init; } = 1e-12;
    public int PadTokenId { get; init; }
    /// <summary>BART only: multiply token embeddings by sqrt(d_model).</summary>
    public bool ScaleEmbedding { get; init; }
    public string HiddenAct { get; init; } = "gelu";
    public double InitializerRange { get; init; } = 0.02;
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    /// <summary>BART decoder shape, kept only so a saved config.json describes a loadable BartModel.</summary>
    public int DecoderLayers { get; init; }
    public int DecoderAttentionHeads { get; init; }
    public int DecoderFfnDim { get; init; }
    public string TorchDtype { get; init; } = "float32";

    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>The base-model architecture our saved folders declare (we save the encoder body only).</summary>
    public string BaseArchitecture => ModelType switch { "roberta" => "RobertaModel", "bart" => "BartModel", _ => "BertModel" };

    /// <summary>Rows of the position table: BART's learned positions carry an offset of 2 outside the config value.</summary>
    public int PositionTableSize => ModelType == "bart" ? MaxPositionEmbeddings + 2 : MaxPositionEmbeddings;

    /// <summary>Longest input the position table can serve (RoBERTa positions start at pad_token_id + 1).</summary>
    public int MaxSequenceLength => ModelType switch
    {
        "roberta" => MaxPositionEmbeddings - PadTokenId - 1,
        _ => MaxPositionEmbeddings,
    };

    public static EncoderConfig Load(string folder)
    {
        var (root, path) = HfConfigJson.Load(folder);
        return Parse(root, path);
    }

    public static EncoderConfig Parse(JsonObject j, string path)
    {
        var arch = j["architectures"] is JsonArray a && a.Count > 0 && a[0] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
        string type;
        if (arch is null)
        {
            // Old configs may lack 'architectures'; model_type alone then decides, as AutoModel would.
            var mt = Str(j, "model_type", null);
            if (mt is not ("bert" or "roberta" or "bart"))
                throw new ModelFormatException(
                    $"{path}: field 'architectures' is missing and model_type is '{mt ?? "(none)"}'; supported: {string.Join(", ", SupportedArchitectures)}.");
            type = mt;
            arch = type switch { "roberta" => "RobertaModel", "bart" => "BartModel", _ => "BertModel" };
        }
        else if (!ArchitectureTypes.TryGetValue(arch, out type!))
        {
            throw new ModelFormatException(
                $"{path}: field 'architectures' is '{arch}'; supported encoders: {string.Join(", ", SupportedArchitectures)}.");
        }
        return type == "bart" ? ParseBart(j, path, arch) : ParseBert(j, path, arch, type);
    }

    static EncoderConfig ParseBert(JsonObject j, string path, string arch, string type)
    {
        var pos = Str(j, "position_embedding_type", null) ?? "absolute";
        if (pos != "absolute")
            throw new ModelFormatException($"{path}: field 'position_embedding_type' is '{pos}'; only 'absolute' is supported.");
        var c = new EncoderConfig
        {
            Architecture = arch,
            ModelType = type,
            VocabSize = Size(j, "vocab_size", path, MaxVocab),
            HiddenSize = Size(j, "hidden_size", path, MaxHidden),
            NumHiddenLayers = Size(j, "num_hidden_layers", path, MaxLayers),
            NumAttentionHeads = Size(j, "num_attention_heads", path, MaxHeads),
            IntermediateSize = Size(j, "intermediate_size", path, MaxIntermediate),
            MaxPositionEmbeddings = Size(j, "max_position_embeddings", path, MaxPositions, 512),
            // 0 (no token-type table) is a valid choice here, unlike for the other sizes.
            TypeVocabSize = Int(j, "type_vocab_size", path) is 0 ? 0 : Size(j, "type_vocab_size", path, MaxVocab, 2),
            LayerNormEps = Dbl(j, "layer_norm_eps", 1e-12),
            PadTokenId = Int(j, "pad_token_id", path) ?? (type == "roberta" ? 1 : 0),
            HiddenAct = Act(j, "hidden_act", path),
            InitializerRange = Dbl(j, "initializer_range", 0.02),
            BosTokenId = Int(j, "bos_token_id", path),
            EosTokenId = Int(j, "eos_token_id", path),
            TorchDtype = Str(j, "torch_dtype", null) ?? "float32",
        };
        return c.Validate(path, "hidden_size", "num_attention_heads");
    }

    static EncoderConfig ParseBart(JsonObject j, string path, string arch)
    {
        var layers = Size(j, "encoder_layers", path, MaxLayers);
        var heads = Size(j, "encoder_attention_heads", path, MaxHeads);
        var ffn = Size(j, "encoder_ffn_dim", path, MaxIntermediate);
        var c = new EncoderConfig
        {
            Architecture = arch,
            ModelType = "bart",
            VocabSize = Size(j, "vocab_size", path, MaxVocab),
            HiddenSize = Size(j, "d_model", path, MaxHidden),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            IntermediateSize = ffn,
            MaxPositionEmbeddings = Size(j, "max_position_embeddings", path, MaxPositions, 1024),
            TypeVocabSize = 0,
            // BartModel uses nn.LayerNorm's default eps; the config has no field for it.
            LayerNormEps = 1e-5,
            PadTokenId = Int(j, "pad_token_id", path) ?? 1,
            ScaleEmbedding = Bool(j, "scale_embedding", false),
            HiddenAct = Act(j, "activation_function", path),
            InitializerRange = Dbl(j, "init_std", 0.02),
            BosTokenId = Int(j, "bos_token_id", path) ?? 0,
            EosTokenId = Int(j, "eos_token_id", path) ?? 2,
            DecoderLayers = Int(j, "decoder_layers", path) ?? layers,
            DecoderAttentionHeads = Int(j, "decoder_attention_heads", path) ?? heads,
            DecoderFfnDim = Int(j, "decoder_ffn_dim", path) ?? ffn,
            TorchDtype = Str(j, "torch_dtype", null) ?? "float32",
        };
        return c.Validate(path, "d_model", "encoder_attention_heads");
    }

    EncoderConfig Validate(string path, string hiddenField, string headsField)
    {
        if (NumAttentionHeads <= 0 || HiddenSize % NumAttentionHeads != 0)
            throw new ModelFormatException(
                $"{path}: field '{headsField}' ({NumAttentionHeads}) must divide '{hiddenField}' ({HiddenSize}).");
        if (ModelType == "roberta" && MaxPositionEmbeddings <= PadTokenId + 1)
            throw new ModelFormatException(
                $"{path}: field 'max_position_embeddings' ({MaxPositionEmbeddings}) leaves no positions after pad_token_id {PadTokenId}.");
        if (PadTokenId < 0 || PadTokenId >= VocabSize)
            throw new ModelFormatException($"{path}: field 'pad_token_id' ({PadTokenId}) is outside vocab_size {VocabSize}.");
        return this;
    }

    public JsonObject ToJson()
    {
        if (ModelType == "bart")
        {
            var b = new JsonObject
            {
                ["architectures"] = new JsonArray(Architecture),
                ["model_type"] = "bart",
                ["vocab_size"] = VocabSize,
                ["d_model"] = HiddenSize,
                ["encoder_layers"] = NumHiddenLayers,
                ["encoder_attention_heads"] = NumAttentionHeads,
                ["encoder_ffn_dim"] = IntermediateSize,
                ["decoder_layers"] = DecoderLayers > 0 ? DecoderLayers : NumHiddenLayers,
                ["decoder_attention_heads"] = DecoderAttentionHeads > 0 ? DecoderAttentionHeads : NumAttentionHeads,
                ["decoder_ffn_dim"] = DecoderFfnDim > 0 ? DecoderFfnDim : IntermediateSize,
                ["num_hidden_layers"] = NumHiddenLayers,
                ["max_position_embeddings"] = MaxPositionEmbeddings,
                ["scale_embedding"] = ScaleEmbedding,
                ["activation_function"] = HiddenAct,
                ["init_std"] = HfJsonFloat.Of(InitializerRange),
                ["dropout"] = HfJsonFloat.Of(0.1),
                ["attention_dropout"] = HfJsonFloat.Of(0.0),
                ["activation_dropout"] = HfJsonFloat.Of(0.0),
                ["encoder_layerdrop"] = HfJsonFloat.Of(0.0),
                ["decoder_layerdrop"] = HfJsonFloat.Of(0.0),
                ["is_encoder_decoder"] = true,
                ["tie_word_embeddings"] = true,
                ["pad_token_id"] = PadTokenId,
                ["bos_token_id"] = BosTokenId ?? 0,
                ["eos_token_id"] = EosTokenId ?? 2,
                ["decoder_start_token_id"] = EosTokenId ?? 2,
                ["forced_eos_token_id"] = EosTokenId ?? 2,
                ["torch_dtype"] = TorchDtype,
                ["use_cache"] = true,
            };
            return b;
        }
        var j = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["intermediate_size"] = IntermediateSize,
            ["hidden_act"] = HiddenAct,
            ["hidden_dropout_prob"] = HfJsonFloat.Of(0.1),
            ["attention_probs_dropout_prob"] = HfJsonFloat.Of(0.1),
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["type_vocab_size"] = TypeVocabSize,
            ["initializer_range"] = HfJsonFloat.Of(InitializerRange),
            ["layer_norm_eps"] = HfJsonFloat.Of(LayerNormEps),
            ["position_embedding_type"] = "absolute",
            ["pad_token_id"] = PadTokenId,
            ["torch_dtype"] = TorchDtype,
            ["use_cache"] = true,
        };
        if (BosTokenId is int bos) j["bos_token_id"] = bos;
        if (EosTokenId is int eos) j["eos_token_id"] = eos;
        return j;
    }

    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    static string Act(JsonObject j, string field, string path)
    {
        var act = Str(j, field, null) ?? "gelu";
        if (!SupportedActivations.Contains(act))
            throw new ModelFormatException(
                $"{path}: field '{field}' is '{act}'; supported: {string.Join(", ", SupportedActivations)}.");
        return act;
    }
}
