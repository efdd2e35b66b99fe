using System.Text.Json;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Evaluation;

/// <summary>
/// What <c>refalign eval</c> evaluates (an <c>eval.json</c>): one or more models (checkpoint folders or HF model folders)
/// on the held-out split of a training run's config, with that run's template, truncation, sampling and reward model.
/// Relative paths resolve against the eval file's folder.
/// </summary>
public sealed record EvalConfig
{
    /// <summary>The training run config whose data split, template, truncation, sampling and reward model apply.</summary>
    public string RunConfig { get; init; } = "";

    /// <summary>Checkpoint folders (<c>step-000123</c>) or HF model folders; the first is the baseline of side-by-side win rates.</summary>
    public IReadOnlyList<string> Models { get; init; } = [];

    public string OutputDir { get; init; } = "eval";

    /// <summary>Held-out examples to evaluate (default: the run's <c>eval_examples</c>).</summary>
    public int? Examples { get; init; }

    /// <summary>Samples per prompt (default: the run's <c>refalign.num_samples</c>).</summary>
    public int? NumSamples { get; init; }

    /// <summary>Keys the sampling streams; every model samples with the same keys.</summary>
    public long Seed { get; init; } = 1;

    /// <summary>An answer is correct when its BERTScore F1 against the reference is at least this.</summary>
    public double CorrectThreshold { get; init; } = 0.9;

    /// <summary>Bootstrap resamples (over prompts) for the 95 % intervals.</summary>
    public int Bootstrap { get; init; } = 1000;

    public static EvalConfig Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidRunConfigException("$", $"{path}: eval config file not found.");
        EvalConfig config;
        try
        {
            config = JsonSerializer.Deserialize<EvalConfig>(File.ReadAllText(path), Training.RunConfig.Json)
                     ?? throw new InvalidRunConfigException("$", $"{path}: the document is empty (null).");
        }
        catch (JsonException e)
        {
            var field = (e.Path ?? "$").TrimStart('$', '.');
            throw new InvalidRunConfigException(field, $"{path}: field '{(field.Length == 0 ? "$" : field)}' is invalid ({e.Message.Split(" Path:")[0]})", e);
        }
        var root = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string Abs(string p) => Path.GetFullPath(p, root);
        config = config with { RunConfig = Abs(config.RunConfig), Models = [.. config.Models.Select(Abs)], OutputDir = Abs(config.OutputDir) };
        config.Validate(path);
        return config;
    }

    void Validate(string source)
    {
        void Check(bool ok, string field, string what)
        {
            if (!ok) throw new InvalidRunConfigException(field, $"{source}: field '{field}' {what}");
        }
        Check(File.Exists(RunConfig), "run_config", $"file '{RunConfig}' does not exist");
        Check(Models.Count > 0, "models", "must name at least one model or checkpoint folder");
        for (var i = 0; i < Models.Count; i++)
            Check(Directory.Exists(Models[i]), $"models[{i}]", $"folder '{Models[i]}' does not exist");
        Check(Examples is null or > 0, "examples", "must be at least 1");
        Check(NumSamples is null or > 0, "num_samples", "must be at least 1");
        Check(CorrectThreshold is > 0 and <= 1, "correct_threshold", "must be in (0, 1]");
        Check(Bootstrap >= 100, "bootstrap", "must be at least 100");
    }
}
