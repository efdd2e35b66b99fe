using RefAlign.Runtime;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Rewards;

namespace RefAlign.Grains;

/// <summary>
/// A reward scorer for one scorer silo (its key; runs place it there with a hint): BERTScore or a reward model, the
/// model itself loaded once per silo in <see cref="ScorerCache"/>. Scoring is tensor work on the compute executor.
/// </summary>
[RolePlacement(SiloRoles.Scorer)]
public sealed class RewardScorerGrain(ComputeExecutor executor, ScorerCache scorers, SiloDrain drain) : Grain, IRewardScorerGrain
{
    public Task<IReadOnlyList<double>> Score(RewardScoreRequest request) => drain.IsDraining
        ? Task.FromException<IReadOnlyList<double>>(new SiloDrainingException("reward scorer"))
        : executor.RunAsync<IReadOnlyList<double>>(() =>
    {
        if (request.Kind == RewardScorerKind.RewardModel)
            return scorers.RewardModel(request.Model, executor.TensorDevice).Score(request.Prompts, request.Responses);
        var scorer = scorers.BertScore(request.Model, request.Layers, executor.TensorDevice);
        var scores = scorer.Score(request.Responses, request.References,
            new BertScoreOptions { Idf = request.Idf, IdfReferences = request.IdfReferences });
        return [.. scores.Select(s => s.F1)];
    });
}

/// <summary>One loaded BERTScore encoder per (folder, layer) and one reward model per folder, per silo, shared by every scorer activation.</summary>
public sealed class ScorerCache : IDisposable
{
    readonly Dictionary<(string, int?), BertScorer> _bertScorers = [];
    readonly Dictionary<string, RewardModelScorer> _rewardModels = [];
    readonly Lock _lock = new();

    /// <summary>Called on a compute thread (loading is tensor work).</summary>
    public BertScorer BertScore(string folder, int? layers, TorchSharp.torch.Device device)
    {
        lock (_lock)
        {
            if (!_bertScorers.TryGetValue((folder, layers), out var s))
                _bertScorers[(folder, layers)] = s = BertScorer.FromPretrained(folder, layers, device: device);
            return s;
        }
    }

    /// <summary>Called on a compute thread.</summary>
    public RewardModelScorer RewardModel(string folder, TorchSharp.torch.Device device)
    {
        lock (_lock)
        {
            if (!_rewardModels.TryGetValue(folder, out var s)) _rewardModels[folder] = s = RewardModelScorer.FromPretrained(folder, device);
            return s;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var s in _bertScorers.Values) s.Dispose();
            foreach (var s in _rewardModels.Values) s.Dispose();
            _bertScorers.Clear();
            _rewardModels.Clear();
        }
    }
}
