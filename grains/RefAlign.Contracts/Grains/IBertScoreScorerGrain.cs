using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// BERTScore workers, one per scorer silo (key: that silo's address, where a placement hint puts it), so a run's
/// scoring spreads over the scorer silos; the encoder itself is loaded once per silo and shared.
/// </summary>
public interface IBertScoreScorerGrain : IGrainWithStringKey
{
    [ResponseTimeout("00:30:00")]
    Task<IReadOnlyList<double>> Score(ScoreRequest request);
}
