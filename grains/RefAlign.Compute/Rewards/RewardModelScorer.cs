using System.Text.Json.Nodes;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Rewards;

/// <summary>
/// A reward model: an HF <c>…ForSequenceClassification</c> folder with one output (docs/algorithms.md §9).
/// <list type="bullet">
/// <item>Llama / Mistral / Qwen2: the decoder's final normed hidden state at the last token of the templated prompt
/// (the folder's own chat template) followed by the response, times <c>score.weight</c> [1, hidden] (no bias), as
/// transformers' <c>…ForSequenceClassification</c> pools the last non-padding token.</item>
/// <item>BERT: <c>classifier(tanh(pooler.dense(h[CLS])))</c>; RoBERTa: <c>out_proj(tanh(dense(h[&lt;s&gt;])))</c>, over the
/// pair (prompt, response) encoded as the tokenizer encodes a text pair (BERT's second segment with token type 1),
/// cut longest-first to the model's length.</item>
/// </list>
/// Inference only; one instance per (folder, silo), shared.
/// </summary>
public sealed class RewardModelScorer : IDisposable
{
    static readonly Dictionary<string, string> DecoderHeads = new(StringComparer.Ordinal)
    {
        ["LlamaForSequenceClassification"] = "LlamaForCausalLM",
        ["MistralForSequenceClassification"] = "MistralForCausalLM",
        ["Qwen2ForSequenceClassification"] = "Qwen2ForCausalLM",
    };

    static readonly Dictionary<string, string[]> EncoderHeads = new(StringComparer.Ordinal)
    {
        ["BertForSequenceClassification"] = ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"],
        ["RobertaForSequenceClassification"] = ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"],
    };

    const string ScoreWeight = "score.weight";

    readonly CausalLm? _decoder;
    readonly TextTokenizer? _tokenizer;
    readonly ChatFormat? _format;
    readonly TransformerEncoder? _encoder;
    readonly EncoderTokenizer? _encoderTokenizer;
    readonly Dictionary<string, Tensor> _head;

    public string Folder { get; }

    /// <summary>The config.json architecture (<c>LlamaForSequenceClassification</c>, …).</summary>
    public string Architecture { get; }

    RewardModelScorer(string folder, string architecture, Dictionary<string, Tensor> head, CausalLm? decoder, TextTokenizer? tokenizer,
        TransformerEncoder? encoder, EncoderTokenizer? encoderTokenizer)
    {
        Folder = folder;
        Architecture = architecture;
        _head = head;
        _decoder = decoder;
        _tokenizer = tokenizer;
        _format = tokenizer is null ? null : ChatTemplates.Resolve(ChatTemplate.Auto, tokenizer);
        _encoder = encoder;
        _encoderTokenizer = encoderTokenizer;
    }

    /// <summary>
    /// What loading would check, without reading a weight: a sequence classifier of a supported family, one label, and
    /// its classification head among the weights. <see cref="ModelFormatException"/> says what is wrong.
    /// </summary>
    public static void Check(string folder)
    {
        var (j, path, arch) = Read(folder);
        var names = ModelWeights.TensorNames(folder);
        string[] head = DecoderHeads.ContainsKey(arch) ? [ScoreWeight] : EncoderHeads[arch];
        var missing = head.Where(h => !names.Contains(h)).ToList();
        if (missing.Count > 0)
            throw new ModelFormatException($"{folder}: has no classification head: {string.Join(", ", missing)} missing from its weights ({arch}).");
        if (DecoderHeads.TryGetValue(arch, out var lm)) CausalLmConfig.Parse(AsCausalLm(j, lm), path);
        else EncoderConfig.Load(folder);
    }

    public static RewardModelScorer FromPretrained(string folder, Device? device = null)
    {
        Check(folder);
        var (j, path, arch) = Read(folder);
        if (DecoderHeads.TryGetValue(arch, out var lm))
        {
            var model = new CausalLm(CausalLmConfig.Parse(AsCausalLm(j, lm), path));
            try
            {
                if (device is not null) model.to(device);
                var extra = ModelWeights.LoadInto(model, folder).Where(n => n != ScoreWeight && !model.IsIgnorableCheckpointTensor(n) && n != model.OutputWeightName).ToList();
                if (extra.Count > 0) throw new ModelFormatException($"{folder}: weights contain tensors that {arch} does not have: {string.Join(", ", extra.Take(5))}.");
                model.eval();
                return new RewardModelScorer(folder, arch, ModelWeights.LoadNamed(folder, [ScoreWeight], ScalarType.Float32, device), model,
                    TextTokenizer.Load(folder), null, null);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        var encoder = TransformerEncoder.FromPretrained(folder, device: device);
        try
        {
            return new RewardModelScorer(folder, arch, ModelWeights.LoadNamed(folder, EncoderHeads[arch], ScalarType.Float32, device), null, null,
                encoder, EncoderTokenizer.Load(folder));
        }
        catch
        {
            encoder.Dispose();
            throw;
        }
    }

    static (JsonObject Json, string Path, string Architecture) Read(string folder)
    {
        var (j, path) = HfConfigJson.Load(folder);
        var arch = j["architectures"] is JsonArray a && a.Count > 0 ? a[0]?.GetValue<string>() : null;
        if (arch is null || !(DecoderHeads.ContainsKey(arch) || EncoderHeads.ContainsKey(arch)))
            throw new ModelFormatException(
                $"{path}: field 'architectures' is '{arch ?? "(missing)"}', not a sequence classifier; a reward model is an HF folder of " +
                $"{string.Join(", ", DecoderHeads.Keys.Concat(EncoderHeads.Keys))} with its classification head.");
        // transformers' PretrainedConfig: num_labels, else the size of id2label, else 2.
        var labels = HfConfigJson.Int(j, "num_labels", path) ?? (j["id2label"] as JsonObject)?.Count ?? 2;
        if (labels != 1)
            throw new ModelFormatException($"{path}: field 'num_labels' is {labels}; a reward model has one output (num_labels 1, or one id2label entry).");
        return (j, path, arch);
    }

    /// <summary>The body's config of a decoder reward model folder (its causal LM's, tied: no lm_head).</summary>
    public static CausalLmConfig DecoderConfig(string folder)
    {
        var (j, path, arch) = Read(folder);
        return DecoderHeads.TryGetValue(arch, out var lm) ? CausalLmConfig.Parse(AsCausalLm(j, lm), path)
            : throw new ModelFormatException($"{path}: '{arch}' is not a decoder reward model.");
    }

    /// <summary>The decoder's config as its causal LM would have it; no lm_head is loaded (tied: the score head replaces it).</summary>
    static JsonObject AsCausalLm(JsonObject j, string causalLm)
    {
        var copy = (JsonObject)j.DeepClone();
        copy["architectures"] = new JsonArray(causalLm);
        copy["tie_word_embeddings"] = true;
        return copy;
    }

    /// <summary>The token ids a decoder reward model reads: the templated prompt, then the response (its last tokens when too long).</summary>
    public int[] DecoderTokens(string prompt, string response)
    {
        var tok = _tokenizer ?? throw new InvalidOperationException($"{Architecture} is an encoder.");
        int[] ids = [.. ChatTemplates.Encode(tok, _format!.Prompt(prompt)), .. tok.Encode(response, addSpecialTokens: false)];
        var max = _decoder!.Config.MaxPositionEmbeddings;
        return ids.Length > max ? ids[^max..] : ids;
    }

    /// <summary>An encoder reward model's pair encoding: ids and token types (cut longest-first to the model's length).</summary>
    public (int[] Ids, int[] Types) EncoderTokens(string prompt, string response)
    {
        var tok = _encoderTokenizer ?? throw new InvalidOperationException($"{Architecture} is a decoder.");
        var a = tok.Encode(prompt, addSpecialTokens: false).ToList();
        var b = tok.Encode(response, addSpecialTokens: false).ToList();
        var bert = Architecture.StartsWith("Bert", StringComparison.Ordinal);
        var specials = bert ? 3 : 4;
        var max = Math.Min(tok.ModelMaxLength, _encoder!.Config.MaxSequenceLength) - specials;
        while (a.Count + b.Count > max)
        {
            var longer = a.Count > b.Count ? a : b;
            longer.RemoveAt(longer.Count - 1);
        }
        int[] ids = bert ? [tok.ClsId, .. a, tok.SepId, .. b, tok.SepId] : [tok.ClsId, .. a, tok.SepId, tok.SepId, .. b, tok.SepId];
        var first = a.Count + 2;
        int[] types = [.. ids.Select((_, i) => bert && i >= first ? 1 : 0)];
        return (ids, types);
    }

    /// <summary>One score per (prompt, response); batches of <paramref name="maxBatch"/>, right-padded.</summary>
    public double[] Score(IReadOnlyList<string> prompts, IReadOnlyList<string> responses, int maxBatch = 8)
    {
        if (prompts.Count != responses.Count) throw new ArgumentException($"{prompts.Count} prompts for {responses.Count} responses.", nameof(responses));
        var result = new double[prompts.Count];
        using var _ = no_grad();
        for (var start = 0; start < prompts.Count; start += maxBatch)
        {
            using var scope = NewDisposeScope();
            var n = Math.Min(maxBatch, prompts.Count - start);
            var rows = Enumerable.Range(start, n).Select(i => _decoder is not null
                ? (DecoderTokens(prompts[i], responses[i]), null)
                : ((int[], int[]?))EncoderTokens(prompts[i], responses[i])).ToList();
            var length = rows.Max(r => r.Item1.Length);
            var ids2 = new long[n * length];
            var mask = new long[n * length];
            var types2 = new long[n * length];
            var pad = _decoder is not null ? 0 : _encoderTokenizer!.PadId;
            Array.Fill(ids2, pad);
            for (var b = 0; b < n; b++)
                for (var t = 0; t < rows[b].Item1.Length; t++)
                {
                    ids2[b * length + t] = rows[b].Item1[t];
                    mask[b * length + t] = 1;
                    types2[b * length + t] = rows[b].Item2?[t] ?? 0;
                }
            var device = _decoder?.Device ?? _encoder!.Device;
            var idsT = tensor(ids2, [n, length], device: device);
            var maskT = tensor(mask, [n, length], device: device);
            Tensor scores;
            if (_decoder is not null)
            {
                var h = _decoder.HiddenStates(idsT, maskT).to(ScalarType.Float32);
                // The last real token of each right-padded row.
                var last = tensor(rows.Select(r => (long)r.Item1.Length - 1).ToArray(), device: device).view(n, 1, 1).expand(n, 1, h.shape[2]);
                var pooled = h.gather(1, last).squeeze(1);
                scores = pooled.matmul(_head[ScoreWeight].t());
            }
            else
            {
                var h = _encoder!.HiddenStates(idsT, maskT, _encoder.Config.NumHiddenLayers, tensor(types2, [n, length], device: device)).to(ScalarType.Float32);
                var first = h.select(1, 0);
                scores = Architecture.StartsWith("Bert", StringComparison.Ordinal)
                    ? nn.functional.linear(nn.functional.linear(first, _head["bert.pooler.dense.weight"], _head["bert.pooler.dense.bias"]).tanh(),
                        _head["classifier.weight"], _head["classifier.bias"])
                    : nn.functional.linear(nn.functional.linear(first, _head["classifier.dense.weight"], _head["classifier.dense.bias"]).tanh(),
                        _head["classifier.out_proj.weight"], _head["classifier.out_proj.bias"]);
            }
            var values = scores.to(ScalarType.Float64).cpu().data<double>().ToArray();
            for (var b = 0; b < n; b++) result[start + b] = values[b];
        }
        return result;
    }

    public void Dispose()
    {
        _decoder?.Dispose();
        _encoder?.Dispose();
        foreach (var t in _head.Values) t.Dispose();
    }
}
