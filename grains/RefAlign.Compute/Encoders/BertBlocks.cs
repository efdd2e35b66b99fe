using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Encoders;

// Module fields carry the HF names (BertModel / RobertaModel): TorchSharp registers fields by reflection as well,
// and both must agree.

/// <summary>word + position + token_type(0) embeddings, then LayerNorm (dropout is identity at inference).</summary>
public sealed class BertEmbeddings : nn.Module
{
    readonly Embedding word_embeddings, position_embeddings;
    readonly Embedding? token_type_embeddings;
    readonly LayerNorm LayerNorm;

    public BertEmbeddings(EncoderConfig c) : base(nameof(BertEmbeddings))
    {
        word_embeddings = nn.Embedding(c.VocabSize, c.HiddenSize);
        position_embeddings = nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        register_module("word_embeddings", word_embeddings);
        register_module("position_embeddings", position_embeddings);
        if (c.TypeVocabSize > 0)
        {
            token_type_embeddings = nn.Embedding(c.TypeVocabSize, c.HiddenSize);
            register_module("token_type_embeddings", token_type_embeddings);
        }
        register_module("LayerNorm", LayerNorm);
    }

    /// <param name="inputIds">[B, T] int64</param>
    /// <param name="positionIds">[B, T] int64 rows of the position table</param>
    /// <param name="tokenTypeIds">[B, T] int64 segment ids (BERT sentence pairs); null: all 0</param>
    public Tensor Forward(Tensor inputIds, Tensor positionIds, Tensor? tokenTypeIds = null)
    {
        using var scope = NewDisposeScope();
        var h = word_embeddings.forward(inputIds) + position_embeddings.forward(positionIds);
        // token_type_ids default to zeros in both BertModel and RobertaModel: add row 0 everywhere.
        if (token_type_embeddings is not null)
            h = tokenTypeIds is null ? h + token_type_embeddings.weight![0] : h + token_type_embeddings.forward(tokenTypeIds);
        return LayerNorm.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>attention.self: query/key/value projections and scaled dot-product attention.</summary>
public sealed class BertSelfAttention : nn.Module
{
    readonly Linear query, key, value;
    readonly int _heads;

    public BertSelfAttention(EncoderConfig c) : base(nameof(BertSelfAttention))
    {
        _heads = c.NumAttentionHeads;
        query = nn.Linear(c.HiddenSize, c.HiddenSize);
        key = nn.Linear(c.HiddenSize, c.HiddenSize);
        value = nn.Linear(c.HiddenSize, c.HiddenSize);
        register_module("query", query);
        register_module("key", key);
        register_module("value", value);
    }

    public Tensor Forward(Tensor x, Tensor mask) =>
        EncoderOps.Attend(query.forward(x), key.forward(x), value.forward(x), mask, _heads);
}

/// <summary>attention.output / output: dense, then LayerNorm(dense + residual).</summary>
public sealed class BertResidualOutput : nn.Module
{
    readonly Linear dense;
    readonly LayerNorm LayerNorm;

    public BertResidualOutput(long inDim, EncoderConfig c) : base(nameof(BertResidualOutput))
    {
        dense = nn.Linear(inDim, c.HiddenSize);
        LayerNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        register_module("dense", dense);
        register_module("LayerNorm", LayerNorm);
    }

    public Tensor Forward(Tensor x, Tensor residual)
    {
        using var scope = NewDisposeScope();
        return LayerNorm.forward(dense.forward(x) + residual).MoveToOuterDisposeScope();
    }
}

/// <summary>attention: self + output.</summary>
public sealed class BertAttention : nn.Module
{
    readonly BertSelfAttention self;
    readonly BertResidualOutput output;

    public BertAttention(EncoderConfig c) : base(nameof(BertAttention))
    {
        self = new BertSelfAttention(c);
        output = new BertResidualOutput(c.HiddenSize, c);
        register_module("self", self);
        register_module("output", output);
    }

    public Tensor Forward(Tensor x, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return output.Forward(self.Forward(x, mask), x).MoveToOuterDisposeScope();
    }
}

/// <summary>intermediate: dense + activation.</summary>
public sealed class BertIntermediate : nn.Module
{
    readonly Linear dense;
    readonly string _act;

    public BertIntermediate(EncoderConfig c) : base(nameof(BertIntermediate))
    {
        _act = c.HiddenAct;
        dense = nn.Linear(c.HiddenSize, c.IntermediateSize);
        register_module("dense", dense);
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return EncoderOps.Activate(dense.forward(x), _act).MoveToOuterDisposeScope();
    }
}

/// <summary>Post-LN BERT layer: attention (with its residual norm), intermediate, output (with its residual norm).</summary>
public sealed class BertLayer : nn.Module
{
    readonly BertAttention attention;
    readonly BertIntermediate intermediate;
    readonly BertResidualOutput output;

    public BertLayer(EncoderConfig c) : base(nameof(BertLayer))
    {
        attention = new BertAttention(c);
        intermediate = new BertIntermediate(c);
        output = new BertResidualOutput(c.IntermediateSize, c);
        register_module("attention", attention);
        register_module("intermediate", intermediate);
        register_module("output", output);
    }

    public Tensor Forward(Tensor x, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var a = attention.Forward(x, mask);
        return output.Forward(intermediate.Forward(a), a).MoveToOuterDisposeScope();
    }
}

/// <summary>The <c>encoder.</c> prefix of BertModel: the layer stack.</summary>
public sealed class BertEncoderStack : nn.Module
{
    readonly ModuleList<BertLayer> layer;

    public BertEncoderStack(EncoderConfig c) : base(nameof(BertEncoderStack))
    {
        layer = nn.ModuleList([.. Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new BertLayer(c))]);
        register_module("layer", layer);
    }

    /// <summary>Runs the first <paramref name="layers"/> layers only; intermediates belong to the caller's scope.</summary>
    public Tensor Forward(Tensor h, Tensor mask, int layers)
    {
        for (var i = 0; i < layers; i++) h = layer[i].Forward(h, mask);
        return h;
    }
}
