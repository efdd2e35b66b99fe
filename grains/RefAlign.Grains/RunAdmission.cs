using RefAlign.Compute;
using System.Text;
using RefAlign.Compute.Models;
using RefAlign.Compute.Training;
using RefAlign.Grains.Artifacts;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// Admission of a remote run config, before any grain or tensor is involved: its size and every field against
/// <see cref="RunLimits"/>, every path confined to the silo's roots (symlinks resolved; reads under
/// <c>Silo:DataRoots</c>, only regular files and folders; writes under <c>Silo:OutputRoot</c>), and the memory its learner
/// needs against the learner silos'. Errors name the field; a path outside the roots is reported the same whether or
/// not it exists. <c>refalign train</c> on a workstation does none of this: it reads what its user points it at.
/// </summary>
public sealed class RunAdmission(RunHostOptions host)
{
    static void Refuse(string field, string message) => throw new InvalidRunConfigException(field, $"field '{field}' {message}.");

    /// <summary>
    /// The config, parsed, limited, with canonical absolute paths inside the roots; throws for the first problem. Models
    /// named as earlier stages' outputs resolve to HF folders (<see cref="ModelReferences"/>): <c>run:&lt;id&gt;</c> by
    /// <paramref name="runCheckpoint"/> (id, field → that run's final checkpoint), checkpoints anywhere a model may be read.
    /// </summary>
    public RunConfig Admit(string configJson, Func<string, string, string>? runCheckpoint = null)
    {
        var limits = host.Limits;
        var bytes = Encoding.UTF8.GetByteCount(configJson);
        if (bytes > limits.MaxConfigBytes) Refuse("config_json", $"is {bytes} bytes, over the limit of {limits.MaxConfigBytes} (Limits:MaxConfigBytes)");
        var config = RunConfig.Parse(configJson, "config_json");
        CheckLimits(config, limits);
        // Pushed inputs (artifact:<name>) are the stored copies every silo of the run shares.
        config = ArtifactReferences.Resolve(config, host.Artifacts().Resolve);
        config = ModelReferences.ResolveRuns(config, runCheckpoint ?? ((id, field) => throw new InvalidRunConfigException(field,
            $"field '{field}' names run '{id}', which this silo cannot look up.")));
        // Checkpoints and run folders (under the output or checkpoint root) become the HF folders they stand for, once confined.
        return ModelReferences.ToModelFolders(Confine(config)).Validate();
    }

    static void CheckLimits(RunConfig c, RunLimits l)
    {
        void AtMost(long value, long limit, string field, string setting)
        {
            if (value > limit) Refuse(field, $"is {value}, over the limit of {limit} (Limits:{setting})");
        }
        AtMost(c.BatchSize, l.MaxBatchSize, "batch_size", nameof(l.MaxBatchSize));
        AtMost(c.MicroBatchSize, l.MaxBatchSize, "micro_batch_size", nameof(l.MaxBatchSize));
        AtMost(c.Epochs, l.MaxEpochs, "epochs", nameof(l.MaxEpochs));
        AtMost(c.MaxSteps ?? 0, l.MaxTotalSteps, "max_steps", nameof(l.MaxTotalSteps));
        AtMost(c.EvalExamples, l.MaxBatchSize, "eval_examples", nameof(l.MaxBatchSize));
        AtMost(c.Data.MaxLength, l.MaxSequenceLength, "data.max_length", nameof(l.MaxSequenceLength));
        AtMost(c.Data.MaxPromptLength, l.MaxSequenceLength, "data.max_prompt_length", nameof(l.MaxSequenceLength));
        AtMost(c.Distributed.Shards, l.MaxShards, "distributed.shards", nameof(l.MaxShards));
        if (c.IsRollout)
        {
            AtMost(c.RefAlign.NumSamples, l.MaxSamplesPerPrompt, "refalign.num_samples", nameof(l.MaxSamplesPerPrompt));
            AtMost(c.RefAlign.MaxNewTokens, l.MaxNewTokens, "refalign.max_new_tokens", nameof(l.MaxNewTokens));
        }
    }

    /// <summary>Reads under the data roots (relative: under the first), writes under the output root.</summary>
    RunConfig Confine(RunConfig c)
    {
        // The artifact store's objects are readable as data too (artifact:<name> resolved to them).
        List<string> dataRoots = [.. host.DataRoots.Select(UnixPaths.Canonical), UnixPaths.Canonical(host.Artifacts().ObjectsRoot)];
        var outputRoot = UnixPaths.Canonical(host.OutputRoot);
        // A model may also be an earlier run's checkpoint: the cluster's own outputs are readable as models.
        List<string> modelRoots = [.. dataRoots, outputRoot, .. host.CheckpointRoot is { } cr ? [UnixPaths.Canonical(cr)] : Array.Empty<string>()];
        string Read(string path, string field, bool folder, bool model = false)
        {
            if (string.IsNullOrWhiteSpace(path)) return path;
            var readRoots = model ? modelRoots : dataRoots;
            var canonical = UnixPaths.Canonical(Path.IsPathRooted(path) ? path : Path.Combine(host.DataRoots[0], path));
            if (!readRoots.Any(r => UnixPaths.IsUnder(canonical, r)))
                Refuse(field, $"'{path}' is outside the silo's data roots (Silo:DataRoots{(model ? ", or its output and checkpoint roots for a checkpoint" : "")})");
            var kind = UnixPaths.KindOf(canonical);
            if (folder)
            {
                if (kind == UnixPaths.Kind.Missing) Refuse(field, $"folder '{path}' does not exist");
                if (kind != UnixPaths.Kind.Directory) Refuse(field, $"'{path}' is not a folder");
                // A model folder is read file by file: none of them may lead out of the roots or be a device.
                foreach (var entry in Directory.EnumerateFileSystemEntries(canonical))
                {
                    var target = UnixPaths.Canonical(entry);
                    if (!readRoots.Any(r => UnixPaths.IsUnder(target, r)))
                        Refuse(field, $"'{Path.GetFileName(entry)}' in '{path}' leads outside the silo's data roots (Silo:DataRoots)");
                    if (UnixPaths.KindOf(target) is not (UnixPaths.Kind.Regular or UnixPaths.Kind.Directory))
                        Refuse(field, $"'{Path.GetFileName(entry)}' in '{path}' is not a regular file");
                }
            }
            else
            {
                if (kind == UnixPaths.Kind.Missing) Refuse(field, $"file '{path}' does not exist");
                if (kind != UnixPaths.Kind.Regular) Refuse(field, $"'{path}' is not a regular file");
                var size = new FileInfo(canonical).Length;
                if (size > host.Limits.MaxDataFileBytes)
                    Refuse(field, $"'{path}' is {size} bytes, over the limit of {host.Limits.MaxDataFileBytes} (Limits:MaxDataFileBytes)");
            }
            return canonical;
        }
        var output = UnixPaths.Canonical(Path.IsPathRooted(c.OutputDir) ? c.OutputDir : Path.Combine(host.OutputRoot, c.OutputDir));
        if (!UnixPaths.IsUnder(output, outputRoot)) Refuse("output_dir", $"'{c.OutputDir}' is outside the silo's output root (Silo:OutputRoot)");
        return c with
        {
            Policy = c.Policy with
            {
                Model = Read(c.Policy.Model, "policy.model", folder: true, model: true),
                ReferenceModel = c.Policy.ReferenceModel is { } r ? Read(r, "policy.reference_model", folder: true, model: true) : null,
            },
            Data = c.Data with { Path = Read(c.Data.Path, "data.path", folder: false) },
            RefAlign = !c.IsRollout ? c.RefAlign : c.RefAlign with
            {
                RewardModel = Read(c.RefAlign.RewardModel, "refalign.reward_model", folder: true),
                // A reward model and a remote service's CA are read by the silo: confined like every other input.
                Rewards = c.RefAlign.Rewards?.Select((r, i) => r with
                {
                    Model = r.Model is { } m ? Read(m, $"refalign.rewards[{i}].model", folder: true, model: true) : null,
                    CaCertificate = r.CaCertificate is { } ca ? Read(ca, $"refalign.rewards[{i}].ca_certificate", folder: false) : null,
                }).ToList(),
            },
            OutputDir = output,
        };
    }

    /// <summary>
    /// Bytes a run's learner needs, roughly: weights (its dtype), gradients and optimizer state (fp32) of what it trains,
    /// and the activations of one micro-batch (hidden states of every layer and the float32 logits).
    /// </summary>
    public static long LearnerBytes(RunConfig config)
    {
        var m = CausalLmConfig.Load(config.Policy.Model);
        long h = m.HiddenSize, kv = (long)m.NumKeyValueHeads * m.HeadDim, q = (long)m.NumAttentionHeads * m.HeadDim;
        // NeoX: two MLP projections (no gate) and four adaptable projections per layer instead of seven.
        long mlpMatrices = m.IsGptNeoX ? 2 : 3, adapted = m.IsGptNeoX ? 4 : 7;
        var perLayer = h * q + 2 * h * kv + q * h + mlpMatrices * h * m.IntermediateSize + 2 * h;
        var parameters = m.VocabSize * h * (m.TieWordEmbeddings ? 1 : 2) + m.NumHiddenLayers * perLayer + h;
        var trainable = config.Policy.Lora is { } lora ? m.NumHiddenLayers * adapted * 2 * lora.Rank * Math.Max(h, m.IntermediateSize) : parameters;
        var weightBytes = config.Policy.Dtype == ModelDType.Float32 ? 4 : 2;
        var optimizerSlots = config.Optimizer.Kind == Compute.Training.Optimization.OptimizerKind.AdamW ? 2 : 1;
        var tokens = (long)config.MicroBatchSize * 2 * config.Data.MaxLength; // chosen and rejected (or K samples) rows
        var activations = tokens * (m.NumHiddenLayers * h * 16 + m.VocabSize * 4L * 3);
        // Gradients in the weights' dtype; half precision adds float32 master weights and their gradients.
        var perTrainable = weightBytes == 4 ? 4 : 2 + 4 + 4;
        return parameters * weightBytes + trainable * (perTrainable + 4L * optimizerSlots) + activations;
    }
}
