using RefAlign.Compute.Files;
using Microsoft.Extensions.Logging;
using RefAlign.Runtime;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Telemetry;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using static TorchSharp.torch;

namespace RefAlign.Grains;

/// <summary>
/// A rollout generator. On its learner's silo it samples the learner's own policy, lent in place (see
/// <see cref="InPlaceReplicas"/>); elsewhere (or when the learner cannot lend the version a request needs) it samples
/// its own replica, which starts from the model folder (weight version 0, which equals the learner's initial weights)
/// and pulls the learner's snapshot when a request needs another version. A generator re-placed after a silo loss (or
/// moved to a silo that joined) initializes itself from the run's config on its first request.
/// </summary>
[RolePlacement(SiloRoles.Generator)]
public sealed class RolloutGeneratorGrain(ComputeExecutor executor, ReplicaWeights replicas, InPlaceReplicas inPlace, SiloDrain drain, ILocalSiloDetails silo,
    ILogger<RolloutGeneratorGrain> logger) : Grain, IRolloutGeneratorGrain
{
    RunConfig? _config;
    CausalLm? _policy;
    LoraAdapters? _lora;
    TextTokenizer? _tokenizer;
    long _version;
    /// <summary>The version the last request sampled with (its own replica's, or a lent policy's): what operators see.</summary>
    long _sampledVersion;

    public async Task Initialize(string configJson)
    {
        if (_config is not null) return;
        var config = GrainCompute.Parse(configJson);
        // TextTokenizer.Load checks the folder inside the silo's read roots.
        _tokenizer = await executor.RunAsync(() => TextTokenizer.Load(config.Policy.Model));
        _config = config;
    }

    /// <summary>
    /// This grain's own replica, loaded on first use (a generator next to its learner may never need one) at version 0,
    /// which equals the learner's initial weights.
    /// </summary>
    async Task<CausalLm> OwnReplica()
    {
        if (_policy is { } loaded) return loaded;
        var config = _config!;
        (_policy, _lora) = await executor.RunAsync(() =>
        {
            var policy = CausalLm.FromPretrained(config.Policy.Model, config.Policy.Dtype.ToScalarType(), executor.TensorDevice);
            // Mirror the learner's structure so its trainable tensors (adapters or full weights) map one to one.
            return (policy, PolicySetup.AttachLora(policy, config));
        });
        _version = 0;
        // An own replica receives the learner's versions: ready resident buffers for them while it samples its first step.
        var bytes = PolicySetup.Trainable(_policy, _lora).Sum(p => p.Parameter.NumberOfElements * p.Parameter.ElementSize);
        _ = Task.Run(() => replicas.Prepare(bytes));
        return _policy;
    }

    /// <summary>
    /// Refuses work while the silo drains; a generator re-placed after a silo loss (or moved to a silo that joined)
    /// initializes itself from the run's config on its first request.
    /// </summary>
    async Task ReadyFor(string runId)
    {
        drain.ThrowIfDraining($"generator {this.GetPrimaryKeyString()}");
        if (_config is null) await Initialize(await GrainCompute.ConfigOfRun(GrainFactory, runId));
    }

    public Task<long> WeightVersion() => Task.FromResult(_sampledVersion);

    public Task Release()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public Task MoveTo(SiloAddress silo) => GrainCompute.MigrateTo(this, silo);

    public async Task<GenerateReply> Generate(GenerateRequest request)
    {
        await ReadyFor(request.RunId);
        var config = _config!;
        // Always exactly the newest version the request allows: which weights sample a step never depends on timing or
        // on what this replica happened to hold (a re-placed one starts from the model folder).
        var target = request.MaxVersion == long.MaxValue ? -1 : request.MaxVersion;
        // A learner on this silo at that version lends its own policy: no snapshot, transfer or copy.
        using var loan = inPlace.TryBorrow(request.RunId, target >= 0 ? target : request.MinVersion, target >= 0 ? target : long.MaxValue);
        var (syncBytes, syncSeconds) = (0L, 0.0);
        if (loan is null)
        {
            await OwnReplica();
            var stale = target >= 0 ? _version != target : _version < request.MinVersion;
            if (stale) (syncBytes, syncSeconds) = await SyncWeights(request.RunId, request.Step, target, request.MinVersion);
        }
        var (policy, version) = loan is null ? (_policy!, _version) : (loan.Policy, loan.Version);
        // In place nothing moves; the run's byte counter still gets its series (at 0), which dashboards chart.
        if (loan is not null) TrainingTelemetry.BatchBytesMoved.Add(0, new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, request.RunId));
        _sampledVersion = version;
        using var activity = TrainingTelemetry.StartPhase("generate.shard", request.RunId, request.Step, version);
        activity?.SetTag(TrainingTelemetry.Tags.Shard, this.GetPrimaryKeyString());
        activity?.SetTag("refalign.replica", loan is null ? "own" : "in-place");
        var tok = _tokenizer!;
        var rollouts = await executor.RunAsync(() =>
        {
            var (eos, pad) = PolicySetup.SpecialIds(tok, policy);
            return RolloutWorker.Generate(policy, ids => tok.Decode(ids), [.. request.Prompts.Select(p => p.ToCompute())],
                request.Positions, config.RefAlign, config.Seed, request.Step, eos, pad);
        });
        return new GenerateReply([.. rollouts.Select(r => r.ToMessage())], version, syncBytes, syncSeconds, silo.SiloAddress.ToParsableString());
    }

    /// <summary>
    /// Fetches weight version <paramref name="target"/> (−1: the learner's current one, at least
    /// <paramref name="minVersion"/>) from the learner and loads it.
    /// </summary>
    async Task<(long Bytes, double Seconds)> SyncWeights(string runId, int step, long target, long minVersion, WeightsManifest? known = null)
    {
        using var activity = TrainingTelemetry.StartPhase(TrainingTelemetry.Phases.WeightSync, runId, step, target);
        var learner = GrainFactory.GetGrain<ILearnerGrain>(runId);
        for (var attempt = 0; ; attempt++)
        {
            var manifest = attempt == 0 && known is not null ? known : await learner.GetWeights(target);
            if (manifest.Version < minVersion)
                throw new InvalidOperationException($"learner of {runId} is at version {manifest.Version}; generator needs {minVersion}.");
            try
            {
                // The transfer time excludes capture and apply; replicas on this silo share one fetch (see ReplicaWeights).
                var fetchStarted = System.Diagnostics.Stopwatch.GetTimestamp();
                using var lease = await replicas.GetAsync(learner, runId, manifest);
                var fetchSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(fetchStarted).TotalSeconds;
                var targets = PolicySetup.Trainable(_policy!, _lora).ToDictionary(p => p.Name, p => (Tensor)p.Parameter);
                await executor.RunAsync(() => lease.Snapshot.ApplyTo(targets));
                _version = manifest.Version;
                activity?.SetTag("refalign.bytes", manifest.TotalBytes);
                TrainingTelemetry.BatchBytesMoved.Add(manifest.TotalBytes, new KeyValuePair<string, object?>(TrainingTelemetry.Tags.RunId, runId));
                return (manifest.TotalBytes, fetchSeconds);
            }
            catch (WeightVersionGoneException) when (attempt < 3 && target < 0)
            {
                // The learner moved on between the manifest and a chunk: fetch the current manifest again.
            }
            catch (InvalidDataException e) when (attempt < 3)
            {
                logger.LogWarning("{Problem}; fetching again", e.Message);
            }
        }
    }

    // Sr-*'s prompted pass, offloaded from the learner: the replica runs it at exactly the learner's version while the
    // learner runs its plain forward/backward (GrainTrainingServices.LearnPreferenceAsync).

    public async Task<string> SyncTo(string runId, int step, long version)
    {
        await ReadyFor(runId);
        await OwnReplica();
        if (version >= 0 && _version != version) await SyncWeights(runId, step, version, version);
        return silo.SiloAddress.ToParsableString();
    }

    public async Task<PromptedPassReply> ScorePrompted(PromptedPassRequest request)
    {
        await ReadyFor(request.RunId);
        var policy = await OwnReplica();
        if (_version != request.WeightVersion)
            await SyncWeights(request.RunId, request.Step, request.WeightVersion, request.WeightVersion, request.Manifest);
        using var activity = TrainingTelemetry.StartPhase("refine.prompted_pass", request.RunId, request.Step, _version);
        var (config, tok) = (_config!, _tokenizer!);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var values = await executor.RunAsync(() => RefAlign.Compute.Training.PromptedPass.Compute(policy, [.. request.Pairs.Select(p => p.ToCompute())], config,
            PolicySetup.SpecialIds(tok, policy).Pad));
        return new PromptedPassReply(request.Step, _version, [.. values.Select(v => v.Chosen)], [.. values.Select(v => v.Rejected)],
            System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, silo.SiloAddress.ToParsableString());
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        var (policy, lora) = (_policy, _lora);
        _policy = null;
        _lora = null;
        return policy is null ? Task.CompletedTask : executor.RunAsync(() =>
        {
            lora?.Dispose();
            policy.Dispose();
        }, cancellationToken);
    }
}
