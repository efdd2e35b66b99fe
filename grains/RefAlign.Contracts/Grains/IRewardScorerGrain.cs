using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// Reward scorers, one per scorer silo (key: that silo's address, where a placement hint puts it), so a run's scoring
/// spreads over the scorer silos: BERTScore and reward models, each model loaded once per silo and shared.
/// </summary>
public interface IRewardScorerGrain : IGrainWithStringKey
{
    [ResponseTimeout("00:30:00")]
    Task<IReadOnlyList<double>> Score(RewardScoreRequest request);
}
