using System.Globalization;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Optimization;

namespace RefAlign.Compute.Models;

/// <summary>
/// What a model's config.json commits a process to, known before any tensor exists: the tensors its module holds (names
/// and shapes as state_dict names them, so the weight files' headers can be checked against them without building the
/// model), its parameter count, and the bytes a learner or a replica of it needs. The sizes are bounded when the config is
/// parsed (<see cref="Formats.HfConfigJson.Size"/>) and the arithmetic is in double, so no config overflows it.
/// </summary>
public static class ModelFootprint
{
    /// <summary>The tensors of a module: those outside the layer stack, and those of one layer (named under <paramref name="LayerPrefix"/>N.).</summary>
    sealed record Layout(IReadOnlyList<(string Name, long[] Shape)> Outside, string LayerPrefix, IReadOnlyList<(string Name, long[] Shape)> PerLayer, int Layers)
    {
        public double Parameters => Count(Outside) + Layers * Count(PerLayer);

        static double Count(IEnumerable<(string, long[] Shape)> tensors) => tensors.Sum(t => t.Shape.Aggregate(1.0, (n, d) => n * d));

        public IEnumerable<(string Name, long[] Shape)> Tensors() =>
            Outside.Concat(Enumerable.Range(0, Layers).SelectMany(i => PerLayer.Select(t => (string.Create(CultureInfo.InvariantCulture, $"{LayerPrefix}{i}.{t.Name}"), t.Shape))));
    }

    /// <summary>Adds a linear layer's weight [out, in] (and bias [out]) under <paramref name="name"/>.</summary>
    static void Linear(List<(string, long[])> into, string name, long inDim, long outDim, bool bias = true)
    {
        into.Add(($"{name}.weight", [outDim, inDim]));
        if (bias) into.Add(($"{name}.bias", [outDim]));
    }

    /// <summary>Adds a LayerNorm's weight and bias [dim] (an RMSNorm has the weight only).</summary>
    static void Norm(List<(string, long[])> into, string name, long dim, bool bias = true)
    {
        into.Add(($"{name}.weight", [dim]));
        if (bias) into.Add(($"{name}.bias", [dim]));
    }

    // Mirrors CausalLm, DecoderBlocks and GptNeoXBlocks; ModelFootprintTests holds it to their state_dict.
    static Layout LayoutOf(CausalLmConfig c)
    {
        long h = c.HiddenSize, v = c.VocabSize, i = c.IntermediateSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        List<(string, long[])> outside = [], layer = [];
        if (c.IsGptNeoX)
        {
            outside.Add(("gpt_neox.embed_in.weight", [v, h]));
            Norm(outside, "gpt_neox.final_layer_norm", h);
            if (!c.TieWordEmbeddings) outside.Add(("embed_out.weight", [v, h]));
            Norm(layer, "input_layernorm", h);
            Norm(layer, "post_attention_layernorm", h);
            Linear(layer, "attention.query_key_value", h, 3 * q, c.QkvBias);
            Linear(layer, "attention.dense", q, h, c.OutputBias);
            Linear(layer, "mlp.dense_h_to_4h", h, i);
            Linear(layer, "mlp.dense_4h_to_h", i, h);
            return new Layout(outside, "gpt_neox.layers.", layer, c.NumHiddenLayers);
        }
        outside.Add(("model.embed_tokens.weight", [v, h]));
        Norm(outside, "model.norm", h, bias: false);
        if (!c.TieWordEmbeddings) outside.Add(("lm_head.weight", [v, h]));
        Linear(layer, "self_attn.q_proj", h, q, c.QkvBias);
        Linear(layer, "self_attn.k_proj", h, kv, c.QkvBias);
        Linear(layer, "self_attn.v_proj", h, kv, c.QkvBias);
        Linear(layer, "self_attn.o_proj", q, h, c.OutputBias);
        Linear(layer, "mlp.gate_proj", h, i, c.MlpBias);
        Linear(layer, "mlp.up_proj", h, i, c.MlpBias);
        Linear(layer, "mlp.down_proj", i, h, c.MlpBias);
        Norm(layer, "input_layernorm", h, bias: false);
        Norm(layer, "post_attention_layernorm", h, bias: false);
        return new Layout(outside, "model.layers.", layer, c.NumHiddenLayers);
    }

    // Mirrors TransformerEncoder, BertBlocks and BartBlocks (base-model names, no task prefix).
    static Layout LayoutOf(EncoderConfig c)
    {
        long h = c.HiddenSize, v = c.VocabSize, i = c.IntermediateSize;
        List<(string, long[])> outside = [], layer = [];
        if (c.ModelType == "bart")
        {
            outside.Add(("shared.weight", [v, h]));
            outside.Add(("encoder.embed_positions.weight", [c.PositionTableSize, h]));
            Norm(outside, "encoder.layernorm_embedding", h);
            foreach (var p in (string[])["q_proj", "k_proj", "v_proj", "out_proj"]) Linear(layer, $"self_attn.{p}", h, h);
            Norm(layer, "self_attn_layer_norm", h);
            Linear(layer, "fc1", h, i);
            Linear(layer, "fc2", i, h);
            Norm(layer, "final_layer_norm", h);
            return new Layout(outside, "encoder.layers.", layer, c.NumHiddenLayers);
        }
        outside.Add(("embeddings.word_embeddings.weight", [v, h]));
        outside.Add(("embeddings.position_embeddings.weight", [c.MaxPositionEmbeddings, h]));
        if (c.TypeVocabSize > 0) outside.Add(("embeddings.token_type_embeddings.weight", [c.TypeVocabSize, h]));
        Norm(outside, "embeddings.LayerNorm", h);
        foreach (var p in (string[])["query", "key", "value"]) Linear(layer, $"attention.self.{p}", h, h);
        Linear(layer, "attention.output.dense", h, h);
        Norm(layer, "attention.output.LayerNorm", h);
        Linear(layer, "intermediate.dense", h, i);
        Linear(layer, "output.dense", i, h);
        Norm(layer, "output.LayerNorm", h);
        return new Layout(outside, "encoder.layer.", layer, c.NumHiddenLayers);
    }

    /// <summary>Every tensor of the module <paramref name="c"/> describes, by state_dict name, with its shape.</summary>
    public static IEnumerable<(string Name, long[] Shape)> Tensors(CausalLmConfig c) => LayoutOf(c).Tensors();

    /// <inheritdoc cref="Tensors(CausalLmConfig)"/>
    public static IEnumerable<(string Name, long[] Shape)> Tensors(EncoderConfig c) => LayoutOf(c).Tensors();

    public static double Parameters(CausalLmConfig c) => LayoutOf(c).Parameters;

    public static double Parameters(EncoderConfig c) => LayoutOf(c).Parameters;

    /// <summary>The config fields that size the model, for messages: "vocab_size 32000, hidden_size 4096, …".</summary>
    public static string Sizes(CausalLmConfig c) => string.Create(CultureInfo.InvariantCulture,
        $"vocab_size {c.VocabSize}, hidden_size {c.HiddenSize}, intermediate_size {c.IntermediateSize}, num_hidden_layers {c.NumHiddenLayers}, num_attention_heads {c.NumAttentionHeads}, head_dim {c.HeadDim}");

    /// <inheritdoc cref="Sizes(CausalLmConfig)"/>
    public static string Sizes(EncoderConfig c) => string.Create(CultureInfo.InvariantCulture,
        $"vocab_size {c.VocabSize}, hidden_size {c.HiddenSize}, intermediate_size {c.IntermediateSize}, num_hidden_layers {c.NumHiddenLayers}, max_position_embeddings {c.MaxPositionEmbeddings}");

    /// <summary>
    /// Bytes a run's learner needs, roughly: weights (its dtype), gradients and optimizer state (fp32) of what it trains,
    /// and the activations of one micro-batch (hidden states of every layer and the float32 logits). Run admission and
    /// artifact validation use this same estimate.
    /// </summary>
    public static double LearnerBytes(RunConfig config, CausalLmConfig m)
    {
        double h = m.HiddenSize, parameters = Parameters(m);
        // NeoX: four adaptable projections per layer instead of seven.
        double adapted = m.IsGptNeoX ? 4 : 7;
        var trainable = config.Policy.Lora is { } lora ? m.NumHiddenLayers * adapted * 2 * lora.Rank * Math.Max(h, m.IntermediateSize) : parameters;
        var weightBytes = config.Policy.Dtype == ModelDType.Float32 ? 4 : 2;
        var optimizerSlots = config.Optimizer.Kind == OptimizerKind.AdamW ? 2 : 1;
        var tokens = (double)config.MicroBatchSize * 2 * config.Data.MaxLength; // chosen and rejected (or K samples) rows
        var activations = tokens * (m.NumHiddenLayers * h * 16 + m.VocabSize * 4.0 * 3);
        // Gradients in the weights' dtype; half precision adds float32 master weights and their gradients.
        var perTrainable = weightBytes == 4 ? 4 : 2 + 4 + 4;
        return parameters * weightBytes + trainable * (perTrainable + 4.0 * optimizerSlots) + activations;
    }

    /// <summary>Bytes per element of a floating-point dtype a model is loaded in.</summary>
    public static int BytesPer(TorchSharp.torch.ScalarType dtype) => dtype switch
    {
        TorchSharp.torch.ScalarType.Float16 or TorchSharp.torch.ScalarType.BFloat16 => 2,
        TorchSharp.torch.ScalarType.Float64 => 8,
        _ => 4,
    };

    /// <summary>Bytes of the weights alone at <paramref name="bytesPerParameter"/> (a replica, a reference model, an encoder).</summary>
    public static double WeightBytes(double parameters, int bytesPerParameter) => parameters * bytesPerParameter;

    /// <summary>
    /// This machine's memory as the runtime sees it (a container's limit where there is one): the bound a model loaded
    /// with no other limit is held to, so that a config asking for more fails with a sentence, not the kernel's OOM killer.
    /// </summary>
    public static long HostMemoryBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Throws <see cref="ModelTooLargeException"/> when <paramref name="bytes"/> exceed <paramref name="limit"/>.</summary>
    /// <param name="what">What needs the memory, with the file and a verb: "…/config.json: the model's weights need".</param>
    /// <param name="sizes">The config fields that size it (<see cref="Sizes(CausalLmConfig)"/>).</param>
    /// <param name="limitName">Where the limit comes from: a setting (Limits:MaxModelMemoryBytes) or "this machine's memory".</param>
    public static void RequireWithin(double bytes, long limit, string what, string sizes, string limitName)
    {
        if (bytes > limit)
            throw new ModelTooLargeException(string.Create(CultureInfo.InvariantCulture,
                $"{what} about {Gb(bytes)} ({sizes}), over the limit of {Gb(limit)} ({limitName})."));
    }

    static string Gb(double bytes) => bytes >= 1e15 ? string.Create(CultureInfo.InvariantCulture, $"{bytes:0.#e+0} bytes") : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e9:F1} GB");
}

/// <summary>A model whose config.json asks for more memory than the limit allows; refused before anything is allocated.</summary>
public sealed class ModelTooLargeException(string message) : Exception(message);
