using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Encoders;

/// <summary>
/// The encoder body of BertModel, RobertaModel or BartModel, as BERTScore runs it: hidden states after the first L
/// layers. Parameter names equal the HF base-model names (<c>embeddings.word_embeddings.weight</c>,
/// <c>encoder.layer.0.attention.self.query.weight</c>, <c>shared.weight</c>, <c>encoder.layers.0.fc1.weight</c>, …);
/// checkpoints with a task head (<c>bert.</c>, <c>roberta.</c>, <c>model.</c> prefixes) load too, heads and the BART
/// decoder are ignored.
/// </summary>
public sealed class TransformerEncoder : nn.Module
{
    // BERT/RoBERTa: embeddings + encoder (BertEncoderStack). BART: shared + encoder (BartEncoderStack).
    // Exactly one layout is non-null; no other module-typed fields, since reflection would register them.
    readonly BertEmbeddings? embeddings;
    readonly Embedding? shared;
    readonly nn.Module encoder;

    public EncoderConfig Config { get; }

    public TransformerEncoder(EncoderConfig config) : base(config.BaseArchitecture)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.ModelType is not ("bert" or "roberta" or "bart"))
            throw new ArgumentException($"unknown model type '{config.ModelType}'; supported: bert, roberta, bart.", nameof(config));
        Config = config;
        if (config.ModelType == "bart")
        {
            shared = nn.Embedding(config.VocabSize, config.HiddenSize);
            encoder = new BartEncoderStack(config);
            register_module("shared", shared);
        }
        else
        {
            embeddings = new BertEmbeddings(config);
            encoder = new BertEncoderStack(config);
            register_module("embeddings", embeddings);
        }
        register_module("encoder", encoder);
    }

    public Device Device => parameters().First().device;
    public ScalarType DType => parameters().First().dtype;

    /// <summary>
    /// Hidden states [B, T, hidden] after the first <paramref name="layers"/> layers (0 = the embedding output, after
    /// its LayerNorm); only those layers run. <paramref name="inputIds"/> and <paramref name="attentionMask"/> are int64
    /// [B, T], mask 1 for real tokens and 0 for (right) padding; padded keys get no attention, so real tokens do not
    /// depend on the padding. <paramref name="tokenTypeIds"/> marks a BERT pair's second segment (null: all 0).
    /// Inference only: runs without autograd.
    /// </summary>
    public Tensor HiddenStates(Tensor inputIds, Tensor attentionMask, int layers, Tensor? tokenTypeIds = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(attentionMask);
        if (inputIds.ndim != 2 || !attentionMask.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException(
                $"inputIds must be [B, T] and attentionMask the same shape; got [{string.Join(", ", inputIds.shape)}] and [{string.Join(", ", attentionMask.shape)}].");
        if (layers < 0 || layers > Config.NumHiddenLayers)
            throw new ArgumentOutOfRangeException(nameof(layers), layers,
                $"the model has {Config.NumHiddenLayers} layers (config.json); ask for 0..{Config.NumHiddenLayers}.");
        var t = inputIds.shape[1];
        if (t > Config.MaxSequenceLength)
            throw new ArgumentException(
                $"sequence of {t} tokens exceeds the {Config.MaxSequenceLength} positions of the model (config.json field 'max_position_embeddings' = {Config.MaxPositionEmbeddings}).");

        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var dev = Device;
        var ids = inputIds.to(ScalarType.Int64, dev);
        var mask = EncoderOps.KeyMask(attentionMask.to(dev), DType);
        Tensor h;
        if (shared is not null)
        {
            var stack = (BartEncoderStack)encoder;
            var e = shared.forward(ids);
            if (Config.ScaleEmbedding) e = e * Math.Sqrt(Config.HiddenSize);
            h = stack.Forward(stack.Embed(e), mask, layers);
        }
        else
        {
            h = ((BertEncoderStack)encoder).Forward(embeddings!.Forward(ids, PositionIds(ids), tokenTypeIds?.to(ScalarType.Int64, dev)), mask, layers);
        }
        return h.MoveToOuterDisposeScope();
    }

    Tensor PositionIds(Tensor ids)
    {
        if (Config.ModelType == "roberta")
        {
            // create_position_ids_from_input_ids: real tokens count from pad_token_id + 1; pad tokens sit at pad_token_id.
            var real = ids.ne(Config.PadTokenId).to(ScalarType.Int64);
            return real.cumsum(1) * real + Config.PadTokenId;
        }
        return arange(ids.shape[1], dtype: ScalarType.Int64, device: ids.device).unsqueeze(0).expand(ids.shape[0], -1);
    }

    /// <summary>
    /// HF-style init from a seed: normal(0, initializer_range) for Linear and Embedding weights, LayerNorm 1/0, biases 0,
    /// padding rows of padding_idx embeddings (token tables; RoBERTa's position table) zeroed.
    /// </summary>
    public void InitializeWeights(long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (IsNorm(name)) { if (name.EndsWith(".weight", StringComparison.Ordinal)) p.fill_(1.0); else p.zero_(); }
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else
            {
                using var r = randn(p.shape, ScalarType.Float32, generator: gen);
                p.copy_(r * Config.InitializerRange);
                if (name is "embeddings.word_embeddings.weight" or "shared.weight"
                    || (Config.ModelType == "roberta" && name == "embeddings.position_embeddings.weight"))
                {
                    using var row = p[Config.PadTokenId];
                    row.zero_();
                }
            }
        }
    }

    static bool IsNorm(string name)
    {
        var module = name[..name.LastIndexOf('.')];
        return module.EndsWith("LayerNorm", StringComparison.Ordinal) || module.EndsWith("layer_norm", StringComparison.Ordinal)
            || module.EndsWith("layernorm_embedding", StringComparison.Ordinal);
    }

    /// <summary>
    /// Loads config.json + model.safetensors (or a sharded index). Names may carry the task model's prefix
    /// (<c>bert.</c>, <c>roberta.</c>, <c>model.</c>); heads, the BART decoder and unknown extras are ignored.
    /// </summary>
    public static TransformerEncoder FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        var config = EncoderConfig.Load(folder);
        // Before the module exists: a config.json that claims more than this machine holds is a sentence, not an OOM kill.
        ModelFootprint.RequireWithin(ModelFootprint.WeightBytes(ModelFootprint.Parameters(config), ModelFootprint.BytesPer(dtype)), ModelFootprint.HostMemoryBytes,
            $"{Path.Combine(folder, "config.json")}: the encoder's weights in {dtype} need", ModelFootprint.Sizes(config), "this machine's memory");
        Files.ReadRoots.Current.CheckFolder(folder);
        var model = new TransformerEncoder(config);
        try
        {
            if (dtype != ScalarType.Float32) model.to(dtype);
            // On the device first: each tensor is read straight into its parameter there.
            if (device is not null) model.to(device);
            EncoderWeights.LoadInto(model, folder);
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// What <see cref="FromPretrained"/> checks (config.json, every tensor the encoder needs by name and shape), from
    /// config.json and the weight files' headers alone: no module is built and no weight is read. Returns the config.
    /// </summary>
    public static EncoderConfig CheckPretrained(string folder)
    {
        var config = EncoderConfig.Load(folder);
        EncoderWeights.Check(config, folder);
        return config;
    }

    /// <summary>
    /// Writes config.json (architectures = the base model: BertModel / RobertaModel / BartModel) and model.safetensors
    /// with the base-model HF names. For BART only <c>shared.weight</c> and the encoder are written: transformers'
    /// BartModel ties <c>encoder.embed_tokens</c> to <c>shared</c> and initialises the missing decoder randomly (with
    /// a warning), which does not touch the encoder states BERTScore reads.
    /// </summary>
    public void SavePretrained(string folder)
    {
        Directory.CreateDirectory(folder);
        (Config with { Architecture = Config.BaseArchitecture, TorchDtype = DTypeName(DType) }).Save(folder);
        var tensors = named_parameters().ToDictionary(kv => kv.name, kv => (Tensor)kv.parameter, StringComparer.Ordinal);
        ModelWeights.Save(folder, tensors);
    }

    static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => "float32",
    };
}
