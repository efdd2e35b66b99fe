using System.Text;
using RefAlign.Compute;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Files;
using RefAlign.Compute.Models;
using RefAlign.Compute.Training;
using RefAlign.Grains.Artifacts;

namespace RefAlign.Grains;

/// <summary>
/// Admission of a remote run config, before any grain or tensor is involved: its size and every field against
/// <see cref="RunLimits"/>, every path confined to the silo's roots (reads under <c>Silo:DataRoots</c>, every entry of a
/// model folder at any depth, links resolved, regular files and folders only; writes under <c>Silo:OutputRoot</c>, never
/// inside the artifact store, the checkpoint root or another run's folder), and the memory its models need, estimated from
/// their config.json (<see cref="ModelFootprint"/>) against <c>Limits:MaxModelMemoryBytes</c>. Errors name the field; a
/// path outside the roots is reported the same whether or not it exists. Reads are confined again where files are opened
/// (<see cref="ReadRoots"/>), so nothing swapped in after admission leads out. <c>refalign train</c> on a workstation
/// does none of this: it reads what its user points it at.
/// </summary>
public sealed class RunAdmission(RunHostOptions host)
{
    /// <summary>Characters of a run's name: it becomes part of the run id and of folder names.</summary>
    public const int MaxNameLength = 128;

    static void Refuse(string field, string message) => throw new InvalidRunConfigException(field, $"field '{field}' {message}.");

    /// <summary>
    /// The config, parsed, limited, with canonical absolute paths inside the roots; throws for the first problem. Models
    /// named as earlier stages' outputs resolve to HF folders (<see cref="ModelReferences"/>): <c>run:&lt;id&gt;</c> by
    /// <paramref name="runCheckpoint"/> (id, field → that run's final checkpoint), checkpoints anywhere a model may be read.
    /// <paramref name="runFolders"/> are the output folders of the runs the cluster knows: a new run writes in none of them.
    /// </summary>
    public RunConfig Admit(string configJson, Func<string, string, string>? runCheckpoint = null, IReadOnlyList<string>? runFolders = null)
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
        config = ModelReferences.ToModelFolders(Confine(config, runFolders ?? [])).Validate();
        CheckModels(config);
        return config;
    }

    static void CheckLimits(RunConfig c, RunLimits l)
    {
        void AtMost(long value, long limit, string field, string setting)
        {
            if (value > limit) Refuse(field, $"is {value}, over the limit of {limit} (Limits:{setting})");
        }
        if (c.Name.Length > MaxNameLength) Refuse("name", $"is {c.Name.Length} characters long; a run name has at most {MaxNameLength}");
        foreach (var (path, field) in new[] { (c.OutputDir, "output_dir"), (c.Policy.Model, "policy.model"), (c.Policy.ReferenceModel ?? "", "policy.reference_model"),
                     (c.Data.Path, "data.path"), (c.RefAlign.RewardModel, "refalign.reward_model") })
        {
            if (path.Length > l.MaxPathLength)
                Refuse(field, $"is {path.Length} characters long, over the limit of {l.MaxPathLength} (Limits:MaxPathLength)");
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
    RunConfig Confine(RunConfig c, IReadOnlyList<string> runFolders)
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
                // A model folder is read file by file: none of them, at any depth, may lead out of the roots or be a device.
                try { new ReadRoots(readRoots).CheckFolder(canonical); }
                catch (OutsideRootsException e)
                {
                    var entry = Path.GetRelativePath(canonical, e.Path);
                    Refuse(field, e.Outside ? $"'{entry}' in '{path}' leads outside the silo's data roots (Silo:DataRoots)" : $"'{entry}' in '{path}' is not a regular file");
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
        if (output.Length > host.Limits.MaxPathLength)
            Refuse("output_dir", $"'{c.OutputDir}' is {output.Length} characters long under the output root, over the limit of {host.Limits.MaxPathLength} (Limits:MaxPathLength)");
        if (output.Split('/').FirstOrDefault(segment => Encoding.UTF8.GetByteCount(segment) > 255) is { } longName)
            Refuse("output_dir", $"holds a folder name of {Encoding.UTF8.GetByteCount(longName)} bytes; a file system takes at most 255");
        // The store's files are content-addressed and shared by every run that names them: a run never writes there.
        if (UnixPaths.IsUnder(output, UnixPaths.Canonical(host.Artifacts().Root)))
            Refuse("output_dir", $"'{c.OutputDir}' is inside the artifact store (Silo:OutputRoot/artifacts); choose a folder of its own");
        if (host.CheckpointRoot is { } checkpoints && UnixPaths.IsUnder(output, UnixPaths.Canonical(checkpoints)))
            Refuse("output_dir", $"'{c.OutputDir}' is inside the checkpoint root (Silo:CheckpointRoot), where runs keep their checkpoints; choose a folder of its own");
        if (runFolders.FirstOrDefault(f => UnixPaths.IsUnder(output, UnixPaths.Canonical(f))) is { } taken)
            Refuse("output_dir", $"'{c.OutputDir}' is inside the folder of another run ({Path.GetFileName(taken)}); choose a folder of its own");
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
    /// The models the run loads, from their config.json alone: the policy's context holds the run's sequences, and the
    /// learner (<see cref="ModelFootprint.LearnerBytes"/>), a reference model and the reward encoder each fit
    /// <c>Limits:MaxModelMemoryBytes</c>. A config.json that cannot be read is INVALID_ARGUMENT naming the field.
    /// </summary>
    void CheckModels(RunConfig c)
    {
        var limit = host.Limits.ModelMemoryLimit();
        var limitName = host.Limits.MaxModelMemoryBytes > 0 ? "Limits:MaxModelMemoryBytes" : "this silo's memory (Limits:MaxModelMemoryBytes is 0)";
        static T Read<T>(string field, Func<T> load)
        {
            try { return load(); }
            catch (Exception e) when (e is ModelFormatException or OutsideRootsException or IOException or UnauthorizedAccessException)
            {
                throw new InvalidRunConfigException(field, $"field '{field}': {e.Message}", e);
            }
        }
        void Within(double bytes, string what, string sizes)
        {
            try { ModelFootprint.RequireWithin(bytes, limit, what, sizes, limitName); }
            catch (ModelTooLargeException e) { throw new ResourceExhaustedException(e.Message); }
        }
        var policy = Read("policy.model", () => CausalLmConfig.Load(c.Policy.Model));
        var context = policy.MaxPositionEmbeddings;
        if (c.Data.MaxLength > context)
            Refuse("data.max_length", $"is {c.Data.MaxLength}, beyond the policy's context (max_position_embeddings {context} in its config.json)");
        if (c.Algorithm == Algorithm.RefAlign && c.Data.MaxPromptLength + c.RefAlign.MaxNewTokens > context)
            Refuse("refalign.max_new_tokens", $"is {c.RefAlign.MaxNewTokens}: after a prompt of up to data.max_prompt_length {c.Data.MaxPromptLength} tokens, "
                + $"a sample would pass the policy's context (max_position_embeddings {context} in its config.json)");
        Within(ModelFootprint.LearnerBytes(c, policy), "field 'policy.model': the run's learner (weights, gradients, optimizer state, one micro-batch) needs",
            $"{ModelFootprint.Sizes(policy)}, micro_batch_size {c.MicroBatchSize}, data.max_length {c.Data.MaxLength}");
        var dtypeBytes = c.Policy.Dtype == ModelDType.Float32 ? 4 : 2;
        if (c.Policy.ReferenceModel is { Length: > 0 } reference)
        {
            var r = Read("policy.reference_model", () => CausalLmConfig.Load(reference));
            Within(ModelFootprint.WeightBytes(ModelFootprint.Parameters(r), dtypeBytes), "field 'policy.reference_model': the reference model's weights need", ModelFootprint.Sizes(r));
        }
        if (c.Algorithm == Algorithm.RefAlign)
        {
            var e = Read("refalign.reward_model", () => EncoderConfig.Load(c.RefAlign.RewardModel));
            Within(ModelFootprint.WeightBytes(ModelFootprint.Parameters(e), 4), "field 'refalign.reward_model': the encoder's weights need", ModelFootprint.Sizes(e));
        }
    }

    /// <summary>Bytes a run's learner needs (<see cref="ModelFootprint.LearnerBytes"/>), for the config's policy.</summary>
    public static long LearnerBytes(RunConfig config) =>
        (long)Math.Min(long.MaxValue, ModelFootprint.LearnerBytes(config, CausalLmConfig.Load(config.Policy.Model)));
}
