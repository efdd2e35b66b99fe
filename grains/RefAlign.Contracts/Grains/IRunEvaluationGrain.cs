using Orleans.Concurrency;
using RefAlign.Contracts.Control;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// One evaluation of a finished run's models (key: <c>&lt;run id&gt;.eval-&lt;hex6&gt;</c>): per model, a learner and the
/// run's shard workers under the key <c>&lt;eval key&gt;-&lt;model index&gt;</c>, driven by the evaluator the local
/// <c>refalign eval</c> uses. The caller polls; the work runs on a grain timer so polls get through.
/// </summary>
public interface IRunEvaluationGrain : IGrainWithStringKey
{
    /// <summary>Starts the evaluation; <paramref name="folders"/> are the models' folders, <paramref name="labels"/> their names.</summary>
    Task Start(RunEvalRequest request, string runConfigJson, IReadOnlyList<string> folders, IReadOnlyList<string> labels);

    [AlwaysInterleave]
    Task<RunEvalProgress> Poll();

    /// <summary>The run config model <paramref name="model"/> is evaluated with: how a re-placed worker initializes itself.</summary>
    [AlwaysInterleave]
    Task<string> ModelConfig(int model);

    [AlwaysInterleave]
    Task Cancel();
}
