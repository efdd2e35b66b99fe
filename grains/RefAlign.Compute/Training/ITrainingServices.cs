using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Compute.Training;

/// <summary>
/// The work a run's loop hands out. In <c>refalign train</c> one process does all of it; on a cluster each call is a
/// grain call (sharded over generators and scorers). The loop is the same code either way, so orchestration cannot
/// change the numbers.
/// </summary>
public interface ITrainingServices
{
    /// <summary>K samples for each prompt; <paramref name="step"/> keys the random streams (negative steps: evaluation).</summary>
    Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken cancellation);

    /// <summary>BERTScore F1 of each candidate against its reference.</summary>
    Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken cancellation);

    /// <summary>
    /// Scores of reward <paramref name="reward"/> (an index into <c>refalign.rewards</c>: a reward model or a remote service)
    /// for each sample of <paramref name="inputs"/>.
    /// </summary>
    Task<IReadOnlyList<double>> RewardAsync(int reward, RewardInputs inputs, CancellationToken cancellation) =>
        throw new NotSupportedException($"{GetType().Name} scores no reward models or remote rewards.");

    /// <summary>Reference log-probs (plain, plus prompted when <paramref name="prompted"/>).</summary>
    Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken cancellation);

    Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken cancellation);

    Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation);

    Task<StepResult> LearnSftAsync(int step, IReadOnlyList<SftSequence> rows, CancellationToken cancellation);

    /// <summary>Held-out SFT loss and perplexity of the learner's current weights.</summary>
    Task<IReadOnlyDictionary<string, double>> EvaluateSftAsync(IReadOnlyList<SftSequence> rows, CancellationToken cancellation);

    Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation);

    /// <summary>Saves a checkpoint of the learner's state after <see cref="CheckpointManifest.Step"/> steps; returns its folder.</summary>
    Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken cancellation);

    /// <summary>The latest complete checkpoint, restored into the learner; null when there is none. (Generators catch up on their next request.)</summary>
    Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken cancellation);

    /// <summary>
    /// After <see cref="RestoreLatestAsync"/> found a live learner: the results of the steps it applied most recently.
    /// A step whose reply was lost (the caller's process died) is reported from here instead of never.
    /// </summary>
    IReadOnlyList<StepResult> RecentlyApplied => [];
}
