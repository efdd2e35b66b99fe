using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Compute.Training;

/// <summary>
/// Chaining stages (SFT → Sr-DPO, SFT → RefAlign): a run's <c>policy.model</c> and <c>policy.reference_model</c> may name
/// an earlier run's output instead of an HF folder:
/// <list type="bullet">
/// <item>a checkpoint folder (<c>…/checkpoints/step-000100</c>): a full checkpoint's <c>policy/</c> HF folder, or for LoRA
/// its adapters merged into their base model, written once as <c>merged/</c> inside the checkpoint;</item>
/// <item>a run's output folder (<c>runs/sft</c>, holding <c>checkpoints/</c>): its latest checkpoint;</item>
/// <item><c>run:&lt;id&gt;</c>: that run's final checkpoint: on a cluster, the run with that id (it must have completed);
/// with <c>refalign train</c>, the run whose output folder is &lt;id&gt;.</item>
/// </list>
/// With no <c>reference_model</c> the reference is the resolved policy, as for any policy folder: the SFT model.
/// </summary>
public static class ModelReferences
{
    public const string RunPrefix = "run:";

    /// <summary>The folder a checkpoint's LoRA adapters are merged into (an HF model folder with the base's tokenizer).</summary>
    public const string MergedFolder = "merged";

    public static bool IsRun(string value, out string id)
    {
        id = value.StartsWith(RunPrefix, StringComparison.Ordinal) ? value[RunPrefix.Length..].Trim() : "";
        return id.Length > 0;
    }

    /// <summary>
    /// <paramref name="config"/> with <c>run:</c> references replaced by <paramref name="runCheckpoint"/>'s answer (a
    /// checkpoint folder) and every checkpoint or run folder replaced by the HF folder it stands for. A field that names
    /// no such thing is left as it is (the validator reports a missing folder).
    /// </summary>
    public static RunConfig Resolve(RunConfig config, Func<string, string, string> runCheckpoint) =>
        ToModelFolders(ResolveRuns(config, runCheckpoint));

    /// <summary>Only the <c>run:</c> references, each replaced by its checkpoint folder (a silo confines the result before reading it).</summary>
    public static RunConfig ResolveRuns(RunConfig config, Func<string, string, string> runCheckpoint) =>
        Map(config, (value, field) => IsRun(value, out var id) ? runCheckpoint(id, field) : value);

    /// <summary>Every checkpoint or run folder replaced by the HF folder it stands for.</summary>
    public static RunConfig ToModelFolders(RunConfig config) => Map(config, ToModelFolder);

    static RunConfig Map(RunConfig c, Func<string, string, string> map) => c with
    {
        Policy = c.Policy with
        {
            Model = map(c.Policy.Model, "policy.model"),
            ReferenceModel = c.Policy.ReferenceModel is { } r ? map(r, "policy.reference_model") : null,
        },
    };

    /// <summary>Locally: <c>run:&lt;folder&gt;</c> is a run's output folder; its latest complete checkpoint.</summary>
    public static string LocalRunCheckpoint(string id, string field) =>
        CheckpointStore.LatestIn(Path.Combine(Path.GetFullPath(id), "checkpoints"))?.Folder
        ?? throw new InvalidRunConfigException(field, $"field '{field}' is '{RunPrefix}{id}', but '{Path.Combine(id, "checkpoints")}' holds no complete checkpoint.");

    /// <summary>The HF folder <paramref name="folder"/> stands for (itself when it is one).</summary>
    public static string ToModelFolder(string folder, string field)
    {
        if (!Directory.Exists(folder) || File.Exists(Path.Combine(folder, "config.json"))) return folder;
        if (File.Exists(Path.Combine(folder, CheckpointManifest.FileName)))
        {
            var policy = Path.Combine(folder, "policy");
            if (File.Exists(Path.Combine(policy, "config.json"))) return policy;
            if (Directory.Exists(Path.Combine(folder, "adapter"))) return Merged(folder, field);
            throw new InvalidRunConfigException(field, $"field '{field}': checkpoint '{folder}' holds neither policy/ nor adapter/.");
        }
        if (CheckpointStore.LatestIn(Path.Combine(folder, "checkpoints")) is { } latest) return ToModelFolder(latest.Folder, field);
        return folder;
    }

    /// <summary>
    /// A LoRA checkpoint's adapters merged into their base (adapter_config.json's <c>base_model_name_or_path</c>), in the
    /// base's dtype, with its tokenizer: written to a temporary folder and renamed, so a half-written merge never loads.
    /// </summary>
    static string Merged(string checkpoint, string field)
    {
        var merged = Path.Combine(checkpoint, MergedFolder);
        if (File.Exists(Path.Combine(merged, "config.json"))) return merged;
        var adapter = Path.Combine(checkpoint, "adapter");
        var lora = LoraConfig.Load(adapter);
        var baseModel = lora.BaseModelNameOrPath;
        if (baseModel is null || !File.Exists(Path.Combine(baseModel, "config.json")))
            throw new InvalidRunConfigException(field,
                $"field '{field}': the adapters in '{adapter}' name base model '{baseModel ?? "(none)"}' (base_model_name_or_path), which is not an HF folder here.");
        var dtype = CausalLmConfig.Load(baseModel).TorchDtype switch
        {
            "bfloat16" => ModelDType.BFloat16,
            "float16" => ModelDType.Float16,
            _ => ModelDType.Float32,
        };
        var temp = Path.Combine(checkpoint, $".tmp-{MergedFolder}-{Guid.NewGuid():N}");
        try
        {
            using var model = CausalLm.FromPretrained(baseModel, dtype.ToScalarType());
            using var adapters = LoraAdapters.Attach(model, lora, seed: 0);
            adapters.LoadAdapter(adapter);
            adapters.MergeAndSave(model, temp);
            Learner.CopyTokenizerFiles(baseModel, temp);
            try { Directory.Move(temp, merged); }
            catch (IOException) when (File.Exists(Path.Combine(merged, "config.json"))) { } // merged meanwhile by another reader
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        return merged;
    }
}
