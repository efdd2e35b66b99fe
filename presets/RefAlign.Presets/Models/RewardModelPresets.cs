using System.Text.Json;
using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using static TorchSharp.torch;

namespace RefAlign.Presets;

/// <summary>
/// Tiny HF <c>…ForSequenceClassification</c> folders with random weights, laid out as transformers saves them: a
/// decoder (Llama, Mistral, Qwen2) with a <c>score</c> head instead of <c>lm_head</c>, or a BERT/RoBERTa with its
/// classifier, each with one label. Reward models cannot be downloaded here; these are what the loading code is tested on.
/// </summary>
public static class RewardModelPresets
{
    public static IReadOnlyList<string> Architectures { get; } = ["llama", "mistral", "qwen2", "tiny-bert", "tiny-roberta"];

    public static void Initialize(string folder, string architecture = "llama", long seed = 0)
    {
        switch (architecture)
        {
            case "llama" or "mistral" or "qwen2":
                var config = ModelPresets.Initialize(folder, "tiny", architecture, seed);
                Rewrite(folder, seed, $"{config.Architecture.Replace("ForCausalLM", "", StringComparison.Ordinal)}ForSequenceClassification",
                    tensors =>
                    {
                        tensors.Remove("lm_head.weight");
                        return new() { ["score.weight"] = [1, config.HiddenSize] };
                    }, j => j["pad_token_id"] ??= config.PadTokenId ?? config.EosTokenIds[0]);
                break;
            case "tiny-bert" or "tiny-roberta":
                var encoder = EncoderPresets.Initialize(folder, architecture, seed);
                var h = encoder.HiddenSize;
                var bert = architecture == "tiny-bert";
                Rewrite(folder, seed, bert ? "BertForSequenceClassification" : "RobertaForSequenceClassification", tensors =>
                {
                    // The base model's names under the task model's prefix, as transformers saves a classifier.
                    foreach (var name in tensors.Keys.ToList())
                    {
                        tensors[(bert ? "bert." : "roberta.") + name] = tensors[name];
                        tensors.Remove(name);
                    }
                    return bert
                        ? new() { ["bert.pooler.dense.weight"] = [h, h], ["bert.pooler.dense.bias"] = [h], ["classifier.weight"] = [1, h], ["classifier.bias"] = [1] }
                        : new() { ["classifier.dense.weight"] = [h, h], ["classifier.dense.bias"] = [h], ["classifier.out_proj.weight"] = [1, h], ["classifier.out_proj.bias"] = [1] };
                }, _ => { });
                break;
            default:
                throw new ArgumentException($"unknown reward model architecture '{architecture}'; choose one of {string.Join(", ", Architectures)}.", nameof(architecture));
        }
    }

    /// <summary>Replaces the weights (keeping the body, adding a seeded head) and marks config.json as a one-label classifier.</summary>
    static void Rewrite(string folder, long seed, string architecture, Func<Dictionary<string, Tensor>, Dictionary<string, long[]>> head, Action<JsonObject> edit)
    {
        var tensors = ModelWeights.Load(folder);
        try
        {
            using var gen = new Generator((ulong)(seed + 7919));
            // Biases too, so every part of the head matters in the checks.
            foreach (var (name, shape) in head(tensors)) tensors[name] = randn(shape, ScalarType.Float32, generator: gen) * 0.3;
            ModelWeights.Save(folder, tensors);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
        var (j, path) = HfConfigJson.Load(folder);
        j["architectures"] = new JsonArray(architecture);
        j["num_labels"] = 1;
        j["id2label"] = new JsonObject { ["0"] = "LABEL_0" };
        j["label2id"] = new JsonObject { ["LABEL_0"] = 0 };
        edit(j);
        ModelWeights.WriteAtomically(path, j.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
