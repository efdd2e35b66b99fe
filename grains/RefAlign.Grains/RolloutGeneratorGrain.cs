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
/// A policy replica on a generator silo. It starts from the model folder (weight version 0, which equals the learner's
/// initial weights) and, when a request needs another version, pulls the learner's snapshot. A replica re-placed after
/// a silo loss (or moved to a silo that joined) initializes itself from the run's config on its first request.
/// </summary>
[RolePlacement(SiloRoles.Generator)]
public sealed class RolloutGeneratorGrain(ComputeExecutor executor, WeightExchange exchange, SiloDrain drain, ILocalSiloDetails silo,
    ILogger<RolloutGeneratorGrain> logger) : Grain, IRolloutGeneratorGrain
{
    RunConfig? _config;
    CausalLm? _policy;
    LoraAdapters? _lora;
    TextTokenizer? _tokenizer;
    IReadOnlyList<int> _eos = [];
    int _pad;
    long _version;

    public async Task Initialize(string configJson)
    {
        if (_policy is not null) return;
        var config = GrainCompute.Parse(configJson);
        (_policy, _lora, _tokenizer, _eos, _pad) = await executor.RunAsync(() =>
        {
            var tok = TextTokenizer.Load(config.Policy.Model);
            var policy = CausalLm.FromPretrained(config.Policy.Model, config.Policy.Dtype.ToScalarType(), executor.TensorDevice);
            // Mirror the learner's structure so its trainable tensors (adapters or full weights) map one to one.
            var lora = PolicySetup.AttachLora(policy, config);
            var (eos, pad) = PolicySetup.SpecialIds(tok, policy);
            return (policy, lora, tok, eos, pad);
        });
        _config = config;
        _version = 0;
    }

    public Task<long> WeightVersion() => Task.FromResult(_version);

    public Task Release()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public Task MoveTo(SiloAddress silo) => GrainCompute.MigrateTo(this, silo);

    public async Task<GenerateReply> Generate(GenerateRequest request)
    {
        drain.ThrowIfDraining($"generator {this.GetPrimaryKeyString()}");
        if (_config is null) await Initialize(await GrainCompute.ConfigOfRun(GrainFactory, request.RunId));
        var config = _config!;
        // Always exactly the newest version the request allows: which weights sample a step never depends on timing or
        // on what this replica happened to hold (a re-placed one starts from the model folder).
        var target = request.MaxVersion == long.MaxValue ? -1 : request.MaxVersion;
        var stale = target >= 0 ? _version != target : _version < request.MinVersion;
        var (syncBytes, syncSeconds) = stale ? await SyncWeights(request.RunId, request.Step, target, request.MinVersion) : (0L, 0.0);
        using var activity = TrainingTelemetry.StartPhase("generate.shard", request.RunId, request.Step, _version);
        activity?.SetTag(TrainingTelemetry.Tags.Shard, this.GetPrimaryKeyString());
        var policy = _policy!;
        var tok = _tokenizer!;
        var rollouts = await executor.RunAsync(() => RolloutWorker.Generate(policy, ids => tok.Decode(ids), [.. request.Prompts.Select(p => p.ToCompute())],
            request.Positions, config.RefAlign, config.Seed, request.Step, _eos, _pad));
        return new GenerateReply([.. rollouts.Select(r => r.ToMessage())], _version, syncBytes, syncSeconds, silo.SiloAddress.ToParsableString());
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
                // Several chunks in flight hide each request's round trip; the transfer time excludes capture and apply.
                var fetchStarted = System.Diagnostics.Stopwatch.GetTimestamp();
                // A learner on this silo published into this silo's exchange: read its snapshot in place. Otherwise the
                // stream, then (gone, cut or corrupted) Orleans chunks; bytes that miss the manifest's digest are never applied.
                var snapshot = manifest.StreamAddress is { } address && exchange.FindLocal(address) is { } local
                    ? local
                    : Verified(manifest, await FetchDirect(manifest), "stream") ?? Verified(manifest, await FetchChunks(learner, manifest), "chunks")
                      ?? throw new InvalidDataException($"weights of {runId} version {manifest.Version} did not match their SHA-256 ({manifest.Sha256}) by stream or chunks.");
                var fetchSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(fetchStarted).TotalSeconds;
                var targets = PolicySetup.Trainable(_policy!, _lora).ToDictionary(p => p.Name, p => (Tensor)p.Parameter);
                await executor.RunAsync(() => snapshot.ApplyTo(targets));
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

    /// <summary>The fetched bytes as a snapshot when their SHA-256 is the manifest's; null (and a warning) when not.</summary>
    WeightSnapshot? Verified(WeightsManifest manifest, byte[][]? chunks, string how)
    {
        if (chunks is null) return null;
        var snapshot = WeightSnapshot.FromChunks([.. manifest.Entries.Select(e => e.ToCompute())], chunks);
        if (manifest.Sha256.Length == 0 || snapshot.Sha256() == manifest.Sha256) return snapshot;
        logger.LogWarning("weights of version {Version} by {How} do not match their SHA-256; not applied", manifest.Version, how);
        return null;
    }

    /// <summary>The whole snapshot in one stream from the learner silo; null (fall back to chunks) when unavailable.</summary>
    async Task<byte[][]?> FetchDirect(WeightsManifest manifest)
    {
        if (manifest.StreamAddress is null) return null;
        try
        {
            if (await WeightExchange.FetchAsync(manifest.StreamAddress, manifest.TotalBytes) is { } data) return [data];
            logger.LogWarning("weight stream {Address} no longer holds version {Version}; falling back to chunks", manifest.StreamAddress, manifest.Version);
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or OperationCanceledException)
        {
            logger.LogWarning(e, "weight stream {Address} failed; falling back to chunks", manifest.StreamAddress);
        }
        return null;
    }

    /// <summary>Orleans chunk calls, several in flight to hide each round trip.</summary>
    static async Task<byte[][]> FetchChunks(ILearnerGrain learner, WeightsManifest manifest)
    {
        var chunks = new byte[manifest.ChunkCount][];
        using var inFlight = new SemaphoreSlim(4);
        await Task.WhenAll(Enumerable.Range(0, manifest.ChunkCount).Select(async i =>
        {
            await inFlight.WaitAsync();
            try { chunks[i] = await learner.GetWeightsChunk(manifest.Version, i); }
            finally { inFlight.Release(); }
        }));
        return chunks;
    }

    // Sr-*'s prompted pass, offloaded from the learner: the replica runs it at exactly the learner's version while the
    // learner runs its plain forward/backward (GrainTrainingServices.LearnPreferenceAsync).

    public async Task<string> SyncTo(string runId, int step, long version)
    {
        drain.ThrowIfDraining($"generator {this.GetPrimaryKeyString()}");
        if (_config is null) await Initialize(await GrainCompute.ConfigOfRun(GrainFactory, runId));
        if (version >= 0 && _version != version) await SyncWeights(runId, step, version, version);
        return silo.SiloAddress.ToParsableString();
    }

    public async Task<PromptedPassReply> ScorePrompted(PromptedPassRequest request)
    {
        drain.ThrowIfDraining($"generator {this.GetPrimaryKeyString()}");
        if (_config is null) await Initialize(await GrainCompute.ConfigOfRun(GrainFactory, request.RunId));
        if (_version != request.WeightVersion)
            await SyncWeights(request.RunId, request.Step, request.WeightVersion, request.WeightVersion, request.Manifest);
        using var activity = TrainingTelemetry.StartPhase("refine.prompted_pass", request.RunId, request.Step, _version);
        var (policy, config, pad) = (_policy!, _config!, _pad);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var values = await executor.RunAsync(() => RefAlign.Compute.Training.PromptedPass.Compute(policy, [.. request.Pairs.Select(p => p.ToCompute())], config, pad));
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
