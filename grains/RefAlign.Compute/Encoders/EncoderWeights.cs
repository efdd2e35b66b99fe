using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using static TorchSharp.torch;

namespace RefAlign.Compute.Encoders;

/// <summary>
/// Maps checkpoint tensor names onto <see cref="TransformerEncoder"/>'s base-model names: an optional task-model prefix
/// (<c>bert.</c>, <c>roberta.</c>, <c>model.</c>), old <c>LayerNorm.gamma/beta</c>, and BART's token table stored as
/// <c>encoder.embed_tokens.weight</c> instead of <c>shared.weight</c>.
/// </summary>
internal static class EncoderWeights
{
    /// <summary>Checks every tensor (presence, shape) before copying any, so a bad folder leaves the model untouched.</summary>
    public static void LoadInto(TransformerEncoder model, string folder)
    {
        var tensors = ModelWeights.Load(folder);
        try
        {
            var expected = model.state_dict();
            var plan = Match(model.Config, expected.Select(kv => (kv.Key, kv.Value.shape)),
                tensors.ToDictionary(kv => kv.Key, kv => kv.Value.shape, StringComparer.Ordinal), ModelWeights.Describe(folder));
            using var _ = no_grad();
            foreach (var (name, found) in plan) expected[name].copy_(tensors[found]);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>What <see cref="LoadInto"/> checks, with the same errors, from the config and the weight files' headers alone.</summary>
    public static void Check(EncoderConfig config, string folder) =>
        Match(config, ModelFootprint.Tensors(config), ModelWeights.ReadShapes(folder), ModelWeights.Describe(folder));

    /// <summary>For each tensor the encoder needs (name, shape), the checkpoint tensor that holds it.</summary>
    static List<(string Name, string Found)> Match(EncoderConfig c, IEnumerable<(string Name, long[] Shape)> needed,
        IReadOnlyDictionary<string, long[]> available, string source)
    {
        var expected = needed.ToList();
        string[] prefixes = c.ModelType switch { "bert" => ["", "bert."], "roberta" => ["", "roberta."], _ => ["", "model."] };
        // The prefix under which most of the model's tensors are found (ties: unprefixed first).
        var prefix = prefixes.MaxBy(p => expected.Count(e => Find(available, p, e.Name) is not null))!;

        var plan = new List<(string, string)>(expected.Count);
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            var found = Find(available, prefix, name);
            if (found is null)
            {
                var alts = Candidates(prefix, name).Skip(1).ToList();
                throw new ModelFormatException(
                    $"{source}: has no tensor '{prefix}{name}'{(alts.Count > 0 ? $" (nor {string.Join(", ", alts.Select(a => $"'{a}'"))})" : "")}, " +
                    $"which {c.Architecture} with this config.json needs (shape {Shape(shape)}).");
            }
            if (!available[found].SequenceEqual(shape))
                throw new ModelFormatException(
                    $"{source}: tensor '{found}' has shape {Shape(available[found])} in the file but {c.Architecture} with this config.json expects {Shape(shape)}.");
            used.Add(found);
            plan.Add((name, found));
        }

        // Extra layers mean config.json and the weights disagree; heads and decoders are not ours to check.
        var layerPrefix = prefix + (c.ModelType == "bart" ? "encoder.layers." : "encoder.layer.");
        var extra = available.Keys.Where(n => n.StartsWith(layerPrefix, StringComparison.Ordinal) && !used.Contains(n)).ToList();
        if (extra.Count > 0)
            throw new ModelFormatException(
                $"{source}: weights contain encoder tensors that {c.Architecture} with this config.json does not have " +
                $"(num layers {c.NumHiddenLayers}): {string.Join(", ", extra.Take(5))}{(extra.Count > 5 ? ", …" : "")}.");
        return plan;
    }

    static string? Find(IReadOnlyDictionary<string, long[]> tensors, string prefix, string name) =>
        Candidates(prefix, name).FirstOrDefault(tensors.ContainsKey);

    static IEnumerable<string> Candidates(string prefix, string name)
    {
        yield return prefix + name;
        if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) yield return prefix + name[..^"weight".Length] + "gamma";
        if (name.EndsWith("LayerNorm.bias", StringComparison.Ordinal)) yield return prefix + name[..^"bias".Length] + "beta";
        if (name == "shared.weight") yield return prefix + "encoder.embed_tokens.weight";
    }

    static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";
}
