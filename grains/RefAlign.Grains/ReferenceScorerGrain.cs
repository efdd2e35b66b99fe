using RefAlign.Runtime;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.ReferenceCache;

namespace RefAlign.Grains;

/// <summary>
/// Frozen-reference log-probs for one shard of a run's pairs. The reference is the model folder itself (with LoRA runs
/// that is exactly the policy with adapters off); values are cached per shard and persisted under the run's output.
/// </summary>
[RolePlacement(SiloRoles.Reference)]
public sealed class ReferenceScorerGrain(ComputeExecutor executor, SiloDrain drain, ILocalSiloDetails silo) : Grain, IReferenceScorerGrain
{
    CausalLm? _model;
    ReferenceScorer? _scorer;

    public async Task Initialize(string configJson)
    {
        if (_scorer is not null) return;
        var config = GrainCompute.Parse(configJson);
        var shard = this.GetPrimaryKeyString().Split('/')[^1];
        (_model, _scorer) = await executor.RunAsync(() =>
        {
            var path = config.Policy.ReferenceModel ?? config.Policy.Model;
            var model = CausalLm.FromPretrained(path, config.Policy.Dtype.ToScalarType(), executor.TensorDevice);
            var (_, pad) = PolicySetup.SpecialIds(TextTokenizer.Load(config.Policy.Model), model);
            var cache = new ReferenceLogProbCache(Path.Combine(config.OutputDir, "reference_cache", $"shard-{shard}"));
            return (model, new ReferenceScorer(model, cache, pad));
        });
    }

    public async Task<ReferenceReply> Score(IReadOnlyList<PreferencePairMessage> pairs, bool prompted)
    {
        drain.ThrowIfDraining($"reference scorer {this.GetPrimaryKeyString()}");
        if (_scorer is null) await Initialize(await GrainCompute.ConfigOfRun(GrainFactory, GrainCompute.RunOfShard(this.GetPrimaryKeyString())));
        var scorer = _scorer!;
        var values = await executor.RunAsync(() => scorer.Score([.. pairs.Select(p => p.ToCompute())], prompted));
        return new ReferenceReply([.. values.Select(v => v.ToMessage())], silo.SiloAddress.ToParsableString());
    }

    public Task<int> ModelPasses() => Task.FromResult(_scorer?.Cache.ModelPasses ?? 0);

    public Task<string> Silo() => Task.FromResult(silo.SiloAddress.ToParsableString());

    public Task Release()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public Task MoveTo(SiloAddress silo) => GrainCompute.MigrateTo(this, silo);

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var model = _model;
        _model = null;
        _scorer = null;
        return model is null ? Task.CompletedTask : executor.RunAsync(model.Dispose, cancellationToken);
    }
}
