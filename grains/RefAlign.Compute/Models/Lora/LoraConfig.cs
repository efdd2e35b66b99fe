using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RefAlign.Compute.Models.Lora;

/// <summary>
/// LoRA hyper-parameters, read and written as PEFT's <c>adapter_config.json</c>. The adapter adds
/// <c>(alpha / rank) · B·A·dropout(x)</c> to each targeted projection.
/// </summary>
public sealed record LoraConfig
{
    public const string FileName = "adapter_config.json";

    /// <summary>PEFT's name for "every linear projection of the decoder layers".</summary>
    public const string AllLinear = "all-linear";

    /// <summary>The projections of a Llama-family decoder layer.</summary>
    public static readonly IReadOnlyList<string> LlamaTargets =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>The projections of a GPT-NeoX layer (fused q/k/v, attention output, the two MLP projections).</summary>
    public static readonly IReadOnlyList<string> GptNeoXTargets =
        ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"];

    /// <summary>Every projection name that can carry an adapter, over all supported architectures.</summary>
    public static readonly IReadOnlyList<string> KnownTargets = [.. LlamaTargets, .. GptNeoXTargets];

    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; }
    public IReadOnlyList<string> TargetModules { get; init; } = LlamaTargets;

    /// <summary>Every adaptable projection of <paramref name="model"/>'s architecture.</summary>
    public static IReadOnlyList<string> AllLinearTargets(CausalLmConfig model) =>
        model.IsGptNeoX ? GptNeoXTargets : LlamaTargets;

    /// <summary>Target names as a run config gives them, with <c>all-linear</c> expanded for <paramref name="model"/>.</summary>
    public static IReadOnlyList<string> ResolveTargets(IReadOnlyList<string> targets, CausalLmConfig model) =>
        targets.Contains(AllLinear, StringComparer.Ordinal) ? AllLinearTargets(model) : targets;

    /// <summary>Written to <c>base_model_name_or_path</c>; informational only.</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>alpha / rank, the factor on B·A.</summary>
    public double Scale => Alpha / Rank;

    /// <summary>Throws <see cref="ArgumentException"/> whose parameter name is the offending field.</summary>
    public void Validate()
    {
        if (Rank < 1)
            throw new ArgumentException($"LoRA {nameof(Rank)} must be at least 1, got {Rank}.", nameof(Rank));
        if (!(Alpha > 0) || double.IsInfinity(Alpha))
            throw new ArgumentException(
                $"LoRA {nameof(Alpha)} must be a positive finite number, got {Alpha.ToString(CultureInfo.InvariantCulture)}.", nameof(Alpha));
        if (!(Dropout >= 0 && Dropout < 1))
            throw new ArgumentException(
                $"LoRA {nameof(Dropout)} must be in [0, 1), got {Dropout.ToString(CultureInfo.InvariantCulture)}.", nameof(Dropout));
        if (TargetModules is null || TargetModules.Count == 0)
            throw new ArgumentException($"LoRA {nameof(TargetModules)} must name at least one projection.", nameof(TargetModules));
        foreach (var t in TargetModules)
            if (!KnownTargets.Contains(t, StringComparer.Ordinal))
                throw new ArgumentException(
                    $"LoRA {nameof(TargetModules)} contains '{t}', which is not one of {string.Join(", ", KnownTargets)}.", nameof(TargetModules));
        if (TargetModules.Distinct(StringComparer.Ordinal).Count() != TargetModules.Count)
            throw new ArgumentException($"LoRA {nameof(TargetModules)} lists a projection twice.", nameof(TargetModules));
    }

    /// <summary>
    /// Reads <c>adapter_config.json</c> as PEFT writes it. Options this implementation cannot honour (DoRA, rsLoRA,
    /// per-module ranks, bias training, regex targets, …) are rejected rather than silently ignored.
    /// </summary>
    public static LoraConfig Load(string adapterFolder)
    {
        var path = Path.Combine(adapterFolder, FileName);
        if (!File.Exists(path)) throw new ModelFormatException($"{adapterFolder}: has no {FileName}.");
        JsonObject j;
        try
        {
            j = JsonNode.Parse(Files.ReadRoots.Current.ReadAllText(path)) as JsonObject
                ?? throw new ModelFormatException($"{path}: is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path}: is not valid JSON ({e.Message}).", e);
        }

        var peftType = Str(j, "peft_type", path);
        if (peftType is not null && peftType != "LORA")
            throw new ModelFormatException($"{path}: field 'peft_type' is '{peftType}'; only 'LORA' adapters are supported.");
        var task = Str(j, "task_type", path);
        if (task is not null && task != "CAUSAL_LM")
            throw new ModelFormatException($"{path}: field 'task_type' is '{task}'; only 'CAUSAL_LM' adapters are supported.");
        var bias = Str(j, "bias", path);
        if (bias is not null && bias != "none")
            throw new ModelFormatException($"{path}: field 'bias' is '{bias}'; only 'none' is supported.");
        foreach (var flag in (string[])["use_dora", "use_rslora", "fan_in_fan_out"])
            if (j[flag] is JsonValue v && v.TryGetValue<bool>(out var b) && b)
                throw new ModelFormatException($"{path}: field '{flag}' is true, which is not supported.");
        foreach (var map in (string[])["rank_pattern", "alpha_pattern"])
            if (j[map] is JsonObject o && o.Count > 0)
                throw new ModelFormatException($"{path}: field '{map}' is not empty; per-module ranks/alphas are not supported.");
        foreach (var unsupported in (string[])["layers_to_transform", "modules_to_save"])
            if (j[unsupported] is JsonNode n && !(n is JsonArray a && a.Count == 0))
                throw new ModelFormatException($"{path}: field '{unsupported}' is set, which is not supported.");

        var config = new LoraConfig
        {
            Rank = Int(j, "r", path) ?? 8,
            Alpha = Num(j, "lora_alpha", path) ?? 8,
            Dropout = Num(j, "lora_dropout", path) ?? 0,
            TargetModules = Targets(j["target_modules"], path),
            BaseModelNameOrPath = Str(j, "base_model_name_or_path", path),
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ModelFormatException($"{path}: {e.Message}", e);
        }
        return config;
    }

    /// <summary>Writes <c>adapter_config.json</c> with the fields PEFT writes (PEFT loads it back as is).</summary>
    public void Save(string adapterFolder)
    {
        Validate();
        Directory.CreateDirectory(adapterFolder);
        var j = new JsonObject
        {
            ["alpha_pattern"] = new JsonObject(),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = BaseModelNameOrPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["lora_alpha"] = Alpha,
            ["lora_dropout"] = Dropout,
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = Rank,
            ["rank_pattern"] = new JsonObject(),
            ["revision"] = null,
            ["target_modules"] = new JsonArray([.. TargetModules.Select(t => (JsonNode)t)]),
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = false,
            ["use_rslora"] = false,
        };
        File.WriteAllText(Path.Combine(adapterFolder, FileName), j.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    static IReadOnlyList<string> Targets(JsonNode? n, string path)
    {
        switch (n)
        {
            case null:
                throw new ModelFormatException($"{path}: has no 'target_modules'.");
            case JsonValue v when v.TryGetValue<string>(out var s):
                // Narrowed to the model's own projections when the adapter is attached.
                if (s == AllLinear) return KnownTargets;
                if (KnownTargets.Contains(s, StringComparer.Ordinal)) return [s];
                throw new ModelFormatException(
                    $"{path}: field 'target_modules' is the pattern '{s}'; only a list of projection names or 'all-linear' is supported.");
            case JsonArray a:
                var list = new List<string>(a.Count);
                foreach (var e in a)
                    list.Add(e is JsonValue ev && ev.TryGetValue<string>(out var name)
                        ? name
                        : throw new ModelFormatException($"{path}: field 'target_modules' holds a non-string entry {e?.ToJsonString() ?? "null"}."));
                // PEFT stores a set, so the order is arbitrary: keep ours canonical (unknown names last, for Validate).
                return [.. KnownTargets.Where(list.Contains), .. list.Where(t => !KnownTargets.Contains(t)).Distinct(StringComparer.Ordinal)];
            default:
                throw new ModelFormatException($"{path}: field 'target_modules' must be a list of names, found {n.ToJsonString()}.");
        }
    }

    static string? Str(JsonObject j, string f, string path) => j[f] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw new ModelFormatException($"{path}: field '{f}' must be a string, found {other.ToJsonString()}."),
    };

    static double? Num(JsonObject j, string f, string path) => j[f] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        var other => throw new ModelFormatException($"{path}: field '{f}' must be a number, found {other.ToJsonString()}."),
    };

    static int? Int(JsonObject j, string f, string path)
    {
        var d = Num(j, f, path);
        if (d is null) return null;
        if (d != Math.Floor(d.Value) || d > int.MaxValue || d < int.MinValue)
            throw new ModelFormatException($"{path}: field '{f}' must be an integer, found {d.Value.ToString(CultureInfo.InvariantCulture)}.");
        return (int)d.Value;
    }
}
