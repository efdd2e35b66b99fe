using RefAlign.Compute.Formats;
using RefAlign.Compute.Losses;
using RefAlign.Compute.Training.Checkpoints;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training;

/// <summary>Checkpoint contents and evaluation of the learner.</summary>
public sealed partial class Learner
{
    const string PolicyFolder = "policy", AdapterFolder = "adapter", OptimizerFile = "optimizer.safetensors", RngFile = "rng.safetensors";

    /// <summary>
    /// Writes the policy (an HF folder, or only the LoRA adapter), the optimizer state and torch's RNG state (LoRA
    /// dropout draws from it) into <paramref name="folder"/>; the checkpoint store makes the write atomic.
    /// </summary>
    public void SaveCheckpoint(string folder, string? tokenizerSource = null)
    {
        if (Lora is not null) Lora.SaveAdapter(Path.Combine(folder, AdapterFolder));
        else
        {
            var policyDir = Path.Combine(folder, PolicyFolder);
            Policy.SavePretrained(policyDir);
            if (tokenizerSource is not null) CopyTokenizerFiles(tokenizerSource, policyDir);
        }
        _optimizer.SaveState(Path.Combine(folder, OptimizerFile));
        RngState.SaveFile(Path.Combine(folder, RngFile), new Dictionary<string, byte[]> { ["torch_default"] = RngState.CaptureDefault() });
    }

    /// <summary>Restores exactly what <see cref="SaveCheckpoint"/> wrote; <paramref name="weightVersion"/> comes from the manifest.</summary>
    public void LoadCheckpoint(string folder, long weightVersion)
    {
        if (Lora is not null) Lora.LoadAdapter(Path.Combine(folder, AdapterFolder));
        else
        {
            var extra = ModelWeights.LoadInto(Policy, Path.Combine(folder, PolicyFolder)).Where(n => !Policy.IsIgnorableCheckpointTensor(n)).ToList();
            if (extra.Count > 0)
                throw new ModelFormatException($"{Path.Combine(folder, PolicyFolder)}: unexpected tensors {string.Join(", ", extra.Take(3))}.");
        }
        _optimizer.LoadState(Path.Combine(folder, OptimizerFile));
        var rng = RngState.LoadFile(Path.Combine(folder, RngFile));
        if (rng.TryGetValue("torch_default", out var state)) RngState.RestoreDefault(state);
        WeightVersion = weightVersion;
        _applied.Clear();
    }

    /// <summary>
    /// Saves a checkpoint into <paramref name="store"/> atomically; <paramref name="writeExtra"/> adds files of the
    /// caller's (e.g. a pipelined run's prefetched rollouts) inside the same atomic save. Returns its folder.
    /// </summary>
    public string SaveCheckpoint(CheckpointStore store, CheckpointManifest manifest, string? tokenizerSource, Action<string>? writeExtra = null) =>
        store.Save(manifest, folder =>
        {
            SaveCheckpoint(folder, tokenizerSource);
            writeExtra?.Invoke(folder);
        });

    /// <summary>Restores the store's latest complete checkpoint; null (nothing changed) when there is none.</summary>
    public CheckpointManifest? RestoreLatest(CheckpointStore store) => RestoreLatestFrom(store)?.Manifest;

    /// <summary>Restores the store's latest complete checkpoint and says where it was; null when there is none.</summary>
    public (CheckpointManifest Manifest, string Folder)? RestoreLatestFrom(CheckpointStore store)
    {
        if (store.Latest() is not { } latest) return null;
        LoadCheckpoint(latest.Folder, WeightVersionOf(latest.Manifest));
        return latest;
    }

    /// <summary>The weight version a checkpoint recorded (0 for a checkpoint from before any step).</summary>
    public static long WeightVersionOf(CheckpointManifest manifest) =>
        long.Parse(manifest.Extra.GetValueOrDefault("weight_version", "0"), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Copies tokenizer files so a checkpoint's policy folder is a complete HF model folder.</summary>
    public static void CopyTokenizerFiles(string from, string to)
    {
        string[] names = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json"];
        foreach (var n in names)
            if (File.Exists(Path.Combine(from, n))) File.Copy(Path.Combine(from, n), Path.Combine(to, n), overwrite: true);
    }

    /// <summary>
    /// Preference metrics on held-out pairs with no graph: accuracies, margins, log-probs and, for Sr-*, the prompted
    /// accuracy and mean Δ (paper Fig. 1), each prefixed "eval/".
    /// </summary>
    public IReadOnlyDictionary<string, double> EvaluatePreference(IReadOnlyList<PreferenceRow> rows)
    {
        if (rows.Count == 0) return new Dictionary<string, double>();
        using (PolicySetup.EvalMode(Policy))
        {
            var loss = PreferenceLoss.Create(LossOptions);
            var sums = new Dictionary<string, double>();
            using var _ = no_grad();
            foreach (var (start, count, scale) in Optimization.MicroBatches.Split(rows.Count, _config.MicroBatchSize))
            {
                using var scope = NewDisposeScope();
                var mb = rows.Skip(start).Take(count).ToList();
                var plain = PolicyAndReference(mb, prompted: false, withGrad: false);
                // Prompted tuples are evaluated for every loss, so DPO runs can be compared with Sr-DPO (paper Fig. 1c/1f).
                var hasPrompted = mb.All(r => r.Pair.PromptedPrompt is not null && !double.IsNaN(r.Reference.PromptedChosenSum));
                var prompted = hasPrompted ? PolicyAndReference(mb, prompted: true, withGrad: false) : null;
                using var result = loss.Options.NeedsPrompted ? loss.Compute(plain, prompted) : loss.Compute(plain, null);
                foreach (var (k, v) in result.Metrics) sums[k] = sums.GetValueOrDefault(k) + v * scale;
                if (prompted is not null && !loss.Options.NeedsPrompted)
                {
                    using var pr = loss.Compute(prompted, null);
                    sums["rewards/prompted_accuracies"] = sums.GetValueOrDefault("rewards/prompted_accuracies") + pr.Metrics["rewards/accuracies"] * scale;
                }
            }
            return sums.ToDictionary(kv => "eval/" + kv.Key, kv => kv.Value);
        }
    }
}
