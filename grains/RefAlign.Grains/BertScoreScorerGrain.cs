using RefAlign.Runtime;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Compute.BertScore;

namespace RefAlign.Grains;

/// <summary>
/// A BERTScore worker for one scorer silo (its key; runs place it there with a hint); the encoder itself lives once
/// per silo in <see cref="EncoderCache"/>.
/// </summary>
[RolePlacement(SiloRoles.Scorer)]
public sealed class BertScoreScorerGrain(ComputeExecutor executor, EncoderCache encoders, SiloDrain drain) : Grain, IBertScoreScorerGrain
{
    public Task<IReadOnlyList<double>> Score(ScoreRequest request) => drain.IsDraining
        ? Task.FromException<IReadOnlyList<double>>(new SiloDrainingException("BERTScore worker"))
        : executor.RunAsync<IReadOnlyList<double>>(() =>
    {
        var scorer = encoders.Get(request.RewardModel, request.Layers, executor.TensorDevice);
        var scores = scorer.Score(request.Candidates, request.References,
            new BertScoreOptions { Idf = request.Idf, IdfReferences = request.IdfReferences });
        return [.. scores.Select(s => s.F1)];
    });
}

/// <summary>One loaded BERTScore encoder per (folder, layer) and silo, shared by every scorer activation.</summary>
public sealed class EncoderCache : IDisposable
{
    readonly Dictionary<(string, int?), BertScorer> _scorers = [];
    readonly Lock _lock = new();

    /// <summary>Called on a compute thread (loading is tensor work).</summary>
    public BertScorer Get(string folder, int? layers, TorchSharp.torch.Device device)
    {
        lock (_lock)
        {
            if (!_scorers.TryGetValue((folder, layers), out var s))
                _scorers[(folder, layers)] = s = BertScorer.FromPretrained(folder, layers, device: device);
            return s;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var s in _scorers.Values) s.Dispose();
            _scorers.Clear();
        }
    }
}
