using Microsoft.Extensions.Logging;
using RefAlign.Runtime;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Grains;

/// <summary>
/// The run's learner on a learner/GPU silo. All tensor work runs on the silo's compute executor; the grain only
/// sequences calls, keeps the published weight snapshot and the checkpoint store.
/// </summary>
[RolePlacement(SiloRoles.Learner)]
[KeepAlive] // the optimizer state lives here between steps; the run releases the learner when it ends
public sealed class LearnerGrain(ComputeExecutor executor, WeightExchange exchange, ILogger<LearnerGrain> logger) : Grain, ILearnerGrain
{
    /// <summary>Weight chunks stay well under Orleans' 100 MB message limit.</summary>
    public const int ChunkBytes = 16 << 20;

    Learner? _learner;
    RunConfig? _config;
    CheckpointStore? _store;
    WeightSnapshot? _snapshot;

    Learner Require() => _learner ?? throw new InvalidOperationException($"learner {this.GetPrimaryKeyString()} is not initialized.");

    public async Task Initialize(string configJson, int totalSteps)
    {
        _release?.Dispose();
        _release = null;
        if (_learner is not null) return;
        var config = GrainCompute.Parse(configJson);
        _learner = await executor.RunAsync(() =>
        {
            // Same seeding as the local trainer, so LoRA dropout draws match.
            TorchSharp.torch.manual_seed(config.Seed);
            var tok = TextTokenizer.Load(config.Policy.Model);
            var policy = CausalLm.FromPretrained(config.Policy.Model, config.Policy.Dtype.ToScalarType());
            var (_, pad) = PolicySetup.SpecialIds(tok, policy);
            return new Learner(config, policy, pad, totalSteps);
        });
        _config = config;
        _store = new CheckpointStore(Path.Combine(config.OutputDir, "checkpoints"), config.KeepCheckpoints);
        logger.LogInformation("learner {Run} ready ({Algorithm}, {Steps} steps)", this.GetPrimaryKeyString(), config.Algorithm, totalSteps);
    }

    public Task<StepResultMessage> LearnRefAlign(int step, IReadOnlyList<RolloutRowMessage> rows) =>
        Learn(step, () => Require().RefAlignStep(step, [.. rows.Select(r => r.ToCompute())]));

    public Task<StepResultMessage> LearnPreference(int step, IReadOnlyList<PreferenceRowMessage> rows) =>
        Learn(step, () => Require().PreferenceStep(step, [.. rows.Select(r => r.ToCompute())]));

    async Task<StepResultMessage> Learn(int step, Func<StepResult> work)
    {
        using var activity = TrainingTelemetry.StartPhase("learner.step", this.GetPrimaryKeyString(), step, Require().WeightVersion);
        return (await executor.RunAsync(work)).ToMessage();
    }

    public Task<IReadOnlyDictionary<string, double>> EvaluatePreference(IReadOnlyList<PreferenceRowMessage> rows) =>
        executor.RunAsync(() => Require().EvaluatePreference([.. rows.Select(r => r.ToCompute())]));

    public Task<string> Checkpoint(CheckpointMessage manifest)
    {
        var learner = Require();
        var config = _config!;
        return executor.RunAsync(() => learner.SaveCheckpoint(_store!, manifest.ToCompute(), config.Policy.Model));
    }

    public async Task<CheckpointMessage?> RestoreLatest()
    {
        var learner = Require();
        return (await executor.RunAsync(() => learner.RestoreLatest(_store!)))?.ToMessage();
    }

    public Task<long> WeightVersion() => Task.FromResult(Require().WeightVersion);

    /// <summary>Lets the activation go a little after its run ended (a prompt resume, or a look at its state, still finds it).</summary>
    public Task Release()
    {
        _release?.Dispose();
        _release = this.RegisterGrainTimer(() =>
        {
            DeactivateOnIdle();
            return Task.CompletedTask;
        }, new GrainTimerCreationOptions(ReleaseDelay, Timeout.InfiniteTimeSpan));
        return Task.CompletedTask;
    }

    static readonly TimeSpan ReleaseDelay = TimeSpan.FromMinutes(2);
    IGrainTimer? _release;

    public async Task<WeightsManifest> GetWeights()
    {
        var learner = Require();
        var version = learner.WeightVersion;
        if (_snapshot is null || _snapshotVersion != version)
        {
            _snapshot = await executor.RunAsync(() => WeightSnapshot.Capture(learner.TrainableParameters()));
            _snapshotVersion = version;
            _snapshotUrl = exchange.Publish(this.GetPrimaryKeyString(), version, _snapshot);
        }
        return new WeightsManifest(version, _snapshot.ChunkCount(ChunkBytes), ChunkBytes, _snapshot.TotalBytes, [.. _snapshot.Entries.Select(e => e.ToMessage())], _snapshotUrl);
    }

    long _snapshotVersion = -1;
    string? _snapshotUrl;

    public Task<byte[]> GetWeightsChunk(long version, int index)
    {
        if (_snapshot is null || version != _snapshotVersion)
            throw new InvalidOperationException($"weight version {version} is not published (current snapshot: {_snapshotVersion}); fetch the manifest again.");
        var chunk = _snapshot.Chunk(index, ChunkBytes);
        return Task.FromResult(chunk);
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var learner = _learner;
        _learner = null;
        _snapshot = null;
        exchange.Remove(this.GetPrimaryKeyString());
        return learner is null ? Task.CompletedTask : executor.RunAsync(() =>
        {
            learner.Dispose();
            learner.Policy.Dispose();
        }, cancellationToken);
    }
}
