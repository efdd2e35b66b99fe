using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Evaluation;

/// <summary>Opens a model to evaluate in this process, as the run that made it would see it.</summary>
public static class EvalModels
{
    /// <summary>
    /// The run config for evaluating <paramref name="folder"/>: the run's settings with the eval's seed and sample count,
    /// the evaluated weights as policy, and the run's reference (its <c>reference_model</c>, else its base policy).
    /// </summary>
    public static RunConfig ConfigFor(RunConfig run, EvalConfig eval, string folder, string workDir)
    {
        var baseline = run with
        {
            Seed = eval.Seed, OutputDir = workDir,
            RefAlign = run.RefAlign with { NumSamples = eval.NumSamples ?? run.RefAlign.NumSamples },
        };
        return Kind(folder) switch
        {
            FolderKind.HfModel => baseline with { Policy = run.Policy with { Model = folder, ReferenceModel = run.Policy.ReferenceModel ?? run.Policy.Model, Lora = null } },
            FolderKind.FullCheckpoint => baseline with { Policy = run.Policy with { Model = Path.Combine(folder, "policy"), ReferenceModel = run.Policy.ReferenceModel ?? run.Policy.Model, Lora = null } },
            _ => baseline, // a LoRA checkpoint: the run's own policy, adapters loaded from the folder
        };
    }

    /// <summary>Services over <paramref name="folder"/>'s weights; a LoRA checkpoint's adapters are loaded into the run's base policy.</summary>
    public static LocalTrainingServices Open(RunConfig config, string folder, TextTokenizer tokenizer, TrainingData data, TorchSharp.torch.Device? device = null)
    {
        var services = new LocalTrainingServices(config, tokenizer, data, device);
        try
        {
            if (Kind(folder) == FolderKind.LoraCheckpoint)
            {
                if (config.Policy.Lora is null)
                    throw new ArgumentException($"{folder}: holds LoRA adapters but the run config has no policy.lora.");
                services.Learner.LoadCheckpoint(folder, weightVersion: 0);
            }
            return services;
        }
        catch
        {
            services.Dispose();
            throw;
        }
    }

    /// <summary>Whether <paramref name="folder"/> is a checkpoint of LoRA adapters (loaded into the run's base policy).</summary>
    public static bool IsLoraCheckpoint(string folder) => Kind(folder) == FolderKind.LoraCheckpoint;

    enum FolderKind { HfModel, FullCheckpoint, LoraCheckpoint }

    static FolderKind Kind(string folder) =>
        File.Exists(Path.Combine(folder, "config.json")) ? FolderKind.HfModel
        : File.Exists(Path.Combine(folder, "policy", "config.json")) ? FolderKind.FullCheckpoint
        : Directory.Exists(Path.Combine(folder, "adapter")) ? FolderKind.LoraCheckpoint
        : throw new ArgumentException($"{folder}: is neither an HF model folder (config.json) nor a checkpoint (policy/ or adapter/).");
}
