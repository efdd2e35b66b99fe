using System.Globalization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Contracts.Control;

namespace RefAlign.Grains;

/// <summary>
/// Checks a <c>run eval</c> request and names its models' folders. Only the run's own models can be named (its base
/// policy and its checkpoints), never a path: a remote caller reads nothing else from the silos' disks.
/// </summary>
public static class RunEvaluationRequests
{
    public static void Validate(RunEvalRequest r)
    {
        static void Check(bool ok, string field, string what)
        {
            if (!ok) throw new InvalidRunConfigException(field, $"field '{field}' {what}");
        }
        Check(r.Models.Count <= 8, "models", "names at most 8 models");
        Check(r.Examples is null or (> 0 and <= 100_000), "examples", "must be in 1..100000");
        Check(r.NumSamples is null or (> 0 and <= 256), "num_samples", "must be in 1..256");
        Check(r.CorrectThreshold is > 0 and <= 1, "correct_threshold", "must be in (0, 1]");
        Check(r.Bootstrap is >= 100 and <= 100_000, "bootstrap", "must be in 100..100000");
    }

    /// <summary>The folders and labels of <c>base</c>, <c>latest</c> and <c>step-N</c> (default: <c>latest</c>).</summary>
    public static (IReadOnlyList<string> Folders, IReadOnlyList<string> Labels) Resolve(RunEvalRequest r, RunSummary run, RunConfig config, RunHostOptions host)
    {
        IReadOnlyList<string> names = r.Models.Count == 0 ? ["latest"] : r.Models;
        var folders = new List<string>();
        var labels = new List<string>();
        var checkpoints = host.CheckpointFolder(run.RunId, config);
        for (var i = 0; i < names.Count; i++)
        {
            var field = $"models[{i}]";
            var name = names[i].Trim();
            string folder, label;
            if (name == "base") (folder, label) = (config.Policy.Model, "base");
            else if (name == "latest" || IsStep(name, out _)) label = Path.GetFileName(folder = Checkpoint(run, checkpoints, name, field));
            else throw new InvalidRunConfigException(field, $"field '{field}' is '{name}'; name 'base', 'latest' or 'step-N'.");
            if (labels.Contains(label)) throw new InvalidRunConfigException(field, $"field '{field}' names {label} twice.");
            folders.Add(folder);
            labels.Add(label);
        }
        return (folders, labels);
    }

    /// <summary>
    /// The folder of checkpoint <paramref name="name"/> (<c>latest</c> or <c>step-N</c>) of <paramref name="run"/>, whose
    /// checkpoints live in <paramref name="checkpoints"/>; a name it does not have is an error naming <paramref name="field"/>.
    /// </summary>
    public static string Checkpoint(RunSummary run, string checkpoints, string name, string field)
    {
        if (name == "latest")
            return run.LatestCheckpoint ?? throw new InvalidRunConfigException(field, $"field '{field}' is 'latest' but run '{run.RunId}' has no checkpoint yet.");
        if (!IsStep(name, out var step))
            throw new InvalidRunConfigException(field, $"field '{field}' is '{name}'; name 'latest' or 'step-N'.");
        var folder = Path.Combine(checkpoints, CheckpointStore.FolderName(step));
        if (!Directory.Exists(folder) || CheckpointStore.ReadManifest(folder) is null)
            throw new InvalidRunConfigException(field, $"field '{field}': run '{run.RunId}' has no complete checkpoint '{Path.GetFileName(folder)}' (it has: {Available(checkpoints)}).");
        return folder;
    }

    static bool IsStep(string name, out int step)
    {
        step = 0;
        return name.StartsWith("step-", StringComparison.Ordinal) && int.TryParse(name[5..], NumberStyles.None, CultureInfo.InvariantCulture, out step);
    }

    static string Available(string checkpoints)
    {
        var steps = Directory.Exists(checkpoints)
            ? Directory.GetDirectories(checkpoints, "step-*").Where(f => CheckpointStore.ReadManifest(f) is not null).Select(Path.GetFileName).Order().ToList()
            : [];
        return steps.Count == 0 ? "none" : string.Join(", ", steps);
    }
}
