using RefAlign.Compute.BertScore;
using RefAlign.Compute.Models;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training.Checkpoints;
using RefAlign.Compute.Training.ReferenceCache;
using Device = TorchSharp.torch.Device;

namespace RefAlign.Compute.Training;

/// <summary>
/// Every service of a run in this process (the <c>refalign train</c> trainer and the baseline the cluster is checked
/// against): one policy that the learner updates and the generator samples from (strictly on-policy), a frozen
/// reference (a second model, or the policy with its LoRA adapters off), and a BERTScore encoder.
/// </summary>
public sealed class LocalTrainingServices : ITrainingServices, IDisposable
{
    readonly RunConfig _config;
    readonly TextTokenizer _tokenizer;
    readonly CausalLm? _referenceModel;
    readonly ReferenceScorer? _reference;
    readonly BertScorer? _scorer;
    readonly IReadOnlyList<string>? _idfCorpus;
    readonly CheckpointStore _store;
    readonly int _pad;
    readonly IReadOnlyList<int> _eos;
    readonly Device? _device;
    readonly Func<RewardSpec, IRewardTransport>? _remote;
    readonly Dictionary<int, IDisposable> _rewardScorers = [];

    public Learner Learner { get; }

    /// <summary>The run's checkpoint store (its <see cref="CheckpointStore.BeforeCommit"/> hook injects faults in tests).</summary>
    public CheckpointStore Checkpoints => _store;

    /// <summary>Reference passes run so far (the cache makes repeats free).</summary>
    public ReferenceLogProbCache? ReferenceCache => _reference?.Cache;

    /// <param name="device">Where every model, batch and optimizer state lives (null: the CPU).</param>
    /// <param name="remote">The wire to a remote reward's service (the gRPC one lives with the silo); null: remote rewards are refused.</param>
    public LocalTrainingServices(RunConfig config, TextTokenizer tokenizer, TrainingData data, Device? device = null,
        Func<RewardSpec, IRewardTransport>? remote = null)
    {
        _config = config;
        _device = device;
        _remote = remote;
        _tokenizer = tokenizer;
        TorchSharp.torch.manual_seed(config.Seed);
        var dtype = config.Policy.Dtype.ToScalarType();
        var policy = CausalLm.FromPretrained(config.Policy.Model, dtype, device);
        (_eos, _pad) = PolicySetup.SpecialIds(tokenizer, policy);
        Learner = new Learner(config, policy, _pad, data.TotalSteps(config));
        if (config.IsPreference)
        {
            var cache = new ReferenceLogProbCache(Path.Combine(config.OutputDir, "reference_cache"));
            // A separate reference_model wins, as on the cluster's reference scorers; else LoRA's base is the reference.
            if (Learner.Lora is { } lora && config.Policy.ReferenceModel is null)
                _reference = new ReferenceScorer(policy, cache, _pad, lora.Disable);
            else
            {
                _referenceModel = CausalLm.FromPretrained(config.Policy.ReferenceModel ?? config.Policy.Model, dtype, device);
                _reference = new ReferenceScorer(_referenceModel, cache, _pad);
            }
        }
        else if (config.IsRollout && config.RefAlign.UsesBertScore)
        {
            _scorer = BertScorer.FromPretrained(config.RefAlign.RewardModel, config.RefAlign.BertscoreLayers, device: device);
            _idfCorpus = config.RefAlign.Idf ? [.. data.TrainPrompts.Select(p => p.Reference)] : null;
        }
        _store = new CheckpointStore(Path.Combine(config.OutputDir, "checkpoints"), config.KeepCheckpoints);
    }

    public Task<IReadOnlyList<Rollout>> GenerateAsync(int step, IReadOnlyList<ReferencePrompt> prompts, CancellationToken cancellation) =>
        Task.FromResult(RolloutWorker.Generate(Learner.Policy, ids => _tokenizer.Decode(ids), prompts, [.. Enumerable.Range(0, prompts.Count)],
            _config.RefAlign, _config.Seed, step, _eos, _pad));

    public Task<IReadOnlyList<double>> SimilarityAsync(IReadOnlyList<string> candidates, IReadOnlyList<string> references, CancellationToken cancellation)
    {
        var scorer = _scorer ?? throw new InvalidOperationException("this run has no reward model.");
        var scores = scorer.Score(candidates, references, new BertScoreOptions { Idf = _config.RefAlign.Idf, IdfReferences = _idfCorpus });
        return Task.FromResult<IReadOnlyList<double>>([.. scores.Select(s => s.F1)]);
    }

    public async Task<IReadOnlyList<double>> RewardAsync(int reward, RewardInputs inputs, CancellationToken cancellation)
    {
        var spec = _config.RefAlign.EffectiveRewards[reward];
        if (!_rewardScorers.TryGetValue(reward, out var scorer))
            _rewardScorers[reward] = scorer = spec.Kind switch
            {
                RewardKind.RewardModel => RewardModelScorer.FromPretrained(spec.Model!, _device),
                RewardKind.Remote => new RemoteRewardScorer(spec, _remote?.Invoke(spec) ?? throw new InvalidOperationException(
                    $"refalign.rewards[{reward}] is a remote reward; this process has no RewardService client (run it on a cluster: refalign run start).")),
                _ => throw new InvalidOperationException($"refalign.rewards[{reward}] ({spec.Kind}) is not scored through RewardAsync."),
            };
        return scorer switch
        {
            RewardModelScorer model => model.Score(inputs.Prompts, inputs.Responses),
            RemoteRewardScorer remote => await remote.ScoreAsync(inputs, cancellation),
            _ => throw new InvalidOperationException(),
        };
    }

    public Task<IReadOnlyList<ReferenceLogProbs>> ReferenceAsync(IReadOnlyList<PreferencePair> pairs, bool prompted, CancellationToken cancellation)
    {
        var reference = _reference ?? throw new InvalidOperationException("this run has no reference model.");
        return Task.FromResult(reference.Score(pairs, prompted));
    }

    public Task<StepResult> LearnRefAlignAsync(int step, IReadOnlyList<RolloutRow> rows, CancellationToken cancellation) =>
        Task.FromResult(Learner.RefAlignStep(step, rows));

    public Task<StepResult> LearnPreferenceAsync(int step, IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation) =>
        Task.FromResult(Learner.PreferenceStep(step, rows));

    public Task<StepResult> LearnSftAsync(int step, IReadOnlyList<SftSequence> rows, CancellationToken cancellation) =>
        Task.FromResult(Learner.SftStep(step, rows));

    public Task<IReadOnlyDictionary<string, double>> EvaluateSftAsync(IReadOnlyList<SftSequence> rows, CancellationToken cancellation) =>
        Task.FromResult(Learner.EvaluateSft(rows));

    public Task<IReadOnlyDictionary<string, double>> EvaluatePreferenceAsync(IReadOnlyList<PreferenceRow> rows, CancellationToken cancellation) =>
        Task.FromResult(Learner.EvaluatePreference(rows));

    public Task<string> CheckpointAsync(CheckpointManifest manifest, CancellationToken cancellation) =>
        Task.FromResult(Learner.SaveCheckpoint(_store, manifest, _config.Policy.Model));

    public Task<CheckpointManifest?> RestoreLatestAsync(CancellationToken cancellation) =>
        Task.FromResult(Learner.RestoreLatest(_store));

    /// <summary>Fills the reference cache for every train and eval pair before training starts.</summary>
    public int PrecomputeReference(TrainingData data)
    {
        var reference = _reference ?? throw new InvalidOperationException("only preference runs have a reference model.");
        var all = data.TrainPairs.Concat(data.EvalPairs).ToList();
        reference.Score(all, _config.IsSelfRefined || all.All(p => p.PromptedPrompt is not null));
        return all.Count;
    }

    public void Dispose()
    {
        Learner.Dispose();
        Learner.Policy.Dispose();
        _referenceModel?.Dispose();
        _scorer?.Dispose();
        foreach (var s in _rewardScorers.Values) s.Dispose();
    }
}
