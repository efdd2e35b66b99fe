using RefAlign.Compute.Evaluation;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Presets;

namespace RefAlign.TestSupport;

/// <summary>
/// The verifiable demo task as the README's recipe runs it (<c>examples/recipes/grpo-verifiable.json</c>): the tiny policy
/// of <c>refalign model init --preset tiny</c> and the shipped <c>verifiable.jsonl</c>, under a workspace folder; and its
/// held-out accuracy, measured by the evaluation <c>refalign eval</c> runs.
/// </summary>
public static class VerifiableTask
{
    public static string RecipePath => Path.Combine(BuiltTools.RepositoryRoot, "examples", "recipes", "grpo-verifiable.json");

    /// <summary>Writes <c>models/tiny</c> and <c>data/verifiable.jsonl</c> under <paramref name="root"/>.</summary>
    public static void Prepare(string root)
    {
        ModelPresets.Initialize(Path.Combine(root, "models", "tiny"), "tiny", "llama", seed: 0);
        VerifiableData.WriteTo(Path.Combine(root, "data"));
    }

    /// <summary>The recipe with its paths under <paramref name="root"/>.</summary>
    public static RunConfig Recipe(string root) => RunConfig.Load(RecipePath).WithPathsUnder(root).Validate();

    /// <summary>Accuracy of <paramref name="folder"/> (a model folder or a checkpoint) on the run's held-out questions.</summary>
    public static double HeldOutAccuracy(RunConfig run, string folder, string workDir)
    {
        var eval = new EvalConfig { Examples = run.EvalExamples, NumSamples = run.RefAlign.NumSamples, Seed = 1, Bootstrap = 100 };
        var tokenizer = TextTokenizer.Load(run.Policy.Model);
        var data = TrainingData.Load(run, tokenizer);
        var config = EvalModels.ConfigFor(run, eval, folder, workDir);
        using var services = EvalModels.Open(config, folder, tokenizer, data);
        return Evaluator.EvaluateAsync("model", folder, config, data, services, eval).GetAwaiter().GetResult().Metrics["accuracy"];
    }
}
