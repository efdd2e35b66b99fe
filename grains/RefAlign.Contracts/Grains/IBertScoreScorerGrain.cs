using RefAlign.Contracts.Messages;

namespace RefAlign.Contracts.Grains;

/// <summary>Stateless BERTScore workers: any silo with the scorer role, one loaded encoder per silo shared by all.</summary>
public interface IBertScoreScorerGrain : IGrainWithIntegerKey
{
    [ResponseTimeout("00:30:00")]
    Task<IReadOnlyList<double>> Score(ScoreRequest request);
}
