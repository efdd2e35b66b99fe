using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using RefAlign.Grains.Artifacts;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Random model and encoder folders for the fuzz tests (in process and against a silo process): config.json sizes of 0,
/// negative, up to and past 2^31, products that overflow; weight file headers with such shapes, wrong dtypes, broken
/// offsets and lying length prefixes.
/// </summary>
internal static partial class FuzzFolders
{
    static readonly string[] DecoderArchitectures = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPTNeoXForCausalLM"];
    static readonly string[] EncoderArchitectures = ["BertModel", "RobertaModel", "BartModel"];

    static readonly string[] DecoderSizes =
        ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"];

    static readonly string[] EncoderSizes =
        ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "type_vocab_size",
         "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim"];

    static readonly string[] TensorNames =
        ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "lm_head.weight", "gpt_neox.embed_in.weight",
         "embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", "shared.weight", "x"];

    static readonly string[] DTypes = ["F32", "F16", "BF16", "I64", "F8_E4M3", "Q4"];

    /// <summary>A size as a config might claim it: 0, negative, small, 2^31 − 1, 2^31, far beyond, or not a number.</summary>
    static JsonNode? Size(Random r) => r.Next(11) switch
    {
        0 => 0,
        1 => -r.Next(1, int.MaxValue),
        2 => int.MaxValue,
        3 => 2147483648.0,
        4 => 1e20,
        5 or 6 => r.Next(1, 64),
        7 => r.Next(1, int.MaxValue),
        8 => r.NextInt64(1L << 31, 1L << 50),
        9 => "4096",
        _ => r.Next(64, 1 << 16),
    };

    /// <summary>A size a real config could hold, from tiny to larger than the limit allows when multiplied out.</summary>
    static JsonNode Plausible(Random r, string field)
    {
        var heads = 1 << r.Next(0, 6);
        return field switch
        {
            "num_attention_heads" or "encoder_attention_heads" or "num_key_value_heads" => heads,
            "hidden_size" or "d_model" => 32 * (1 << r.Next(0, 9)),
            "num_hidden_layers" or "encoder_layers" => r.Next(1, 128),
            "head_dim" => 8 * r.Next(1, 32),
            "type_vocab_size" => r.Next(0, 3),
            _ => r.Next(1, 1 << 17),
        };
    }

    static long Dim(Random r) => r.Next(8) switch
    {
        0 => 0,
        1 => -1,
        2 => int.MaxValue,
        3 => 1L << 31,
        4 => 1L << 62,
        _ => r.Next(1, 9),
    };

    /// <summary>A safetensors file: a random header (tensors with random dtypes, shapes and offsets) and a few data bytes.</summary>
    static byte[] Weights(Random r)
    {
        if (r.Next(10) == 0) return [.. Enumerable.Range(0, r.Next(0, 64)).Select(_ => (byte)r.Next(256))]; // not even a header
        var header = new JsonObject();
        long offset = 0;
        for (var i = r.Next(0, 6); i > 0; i--)
        {
            var shape = new JsonArray([.. Enumerable.Range(0, r.Next(0, 4)).Select(_ => (JsonNode)Dim(r))]);
            var bytes = r.Next(4) == 0 ? r.NextInt64(-8, 1L << 40) : r.Next(0, 64);
            header[TensorNames[r.Next(TensorNames.Length)] + (r.Next(3) == 0 ? $".{i}" : "")] = new JsonObject
            {
                ["dtype"] = DTypes[r.Next(DTypes.Length)],
                ["shape"] = shape,
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += Math.Max(0, bytes);
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        var data = new byte[Math.Min(offset, 4096)];
        var file = new byte[8 + json.Length + data.Length];
        // Sometimes the length prefix lies (past the file, or beyond the 100 MB header limit).
        var claimed = r.Next(8) switch { 0 => long.MaxValue, 1 => json.Length + 1_000_000L, _ => json.Length };
        BinaryPrimitives.WriteInt64LittleEndian(file, claimed);
        json.CopyTo(file, 8);
        return file;
    }

    /// <summary>A random model (three in four) or encoder folder: config.json and model.safetensors, in <paramref name="folder"/>.</summary>
    public static (string Kind, string Folder, IReadOnlyList<ArtifactFileRecord> Files) Case(Random r, string folder)
    {
        var encoder = r.Next(4) == 0;
        Directory.CreateDirectory(folder);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(encoder ? EncoderArchitectures[r.Next(EncoderArchitectures.Length)] : DecoderArchitectures[r.Next(DecoderArchitectures.Length)]),
        };
        // A third are plausible: every size in range, some large, so that the memory estimate and the header check are
        // what refuses them; the rest claim anything.
        var plausible = r.Next(3) == 0;
        foreach (var field in encoder ? EncoderSizes : DecoderSizes)
            if (plausible || r.Next(10) > 0) config[field] = plausible ? Plausible(r, field) : Size(r);
        var weights = Weights(r);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), weights);
        return (encoder ? "encoder" : "model", folder,
            [new ArtifactFileRecord("config.json", new FileInfo(Path.Combine(folder, "config.json")).Length, ""), new ArtifactFileRecord("model.safetensors", weights.Length, "")]);
    }

    // What an answer names: a field or tensor in quotes, or the sizes of a model too large, or the file.
    [GeneratedRegex(@"'[A-Za-z0-9_.]+'|vocab_size \d+|config\.json|model\.safetensors")]
    public static partial Regex Named();
}
