using RefAlign.Compute.Models;

namespace RefAlign.Grains;

/// <summary>
/// What one remote request may ask of the cluster (<c>Limits:</c> in appsettings.json). Every run config is checked
/// against them before any grain or tensor is involved, so no request can make a silo allocate without bound.
/// </summary>
public sealed record RunLimits
{
    public const string Section = "Limits";

    /// <summary>Size of the run config document.</summary>
    public int MaxConfigBytes { get; init; } = 1 << 20;

    /// <summary><c>batch_size</c> and <c>micro_batch_size</c>.</summary>
    public int MaxBatchSize { get; init; } = 4096;

    /// <summary><c>refalign.num_samples</c> (K).</summary>
    public int MaxSamplesPerPrompt { get; init; } = 64;

    /// <summary><c>refalign.max_new_tokens</c>.</summary>
    public int MaxNewTokens { get; init; } = 8192;

    /// <summary><c>data.max_length</c> (prompt and completion).</summary>
    public int MaxSequenceLength { get; init; } = 32768;

    /// <summary><c>distributed.shards</c>.</summary>
    public int MaxShards { get; init; } = 64;

    /// <summary><c>max_steps</c>, and <c>epochs</c> × the steps of one epoch.</summary>
    public long MaxTotalSteps { get; init; } = 10_000_000;

    /// <summary><c>epochs</c>.</summary>
    public int MaxEpochs { get; init; } = 1000;

    /// <summary>A data file's size (it is read into memory).</summary>
    public long MaxDataFileBytes { get; init; } = 8L << 30;

    /// <summary>One artifact's tar stream (a pushed model, encoder, data file...).</summary>
    public long MaxArtifactBytes { get; init; } = 64L << 30;

    /// <summary>Every stored artifact together, pushes in progress included.</summary>
    public long MaxArtifactStoreBytes { get; init; } = 512L << 30;

    /// <summary>Runs running at once in the cluster.</summary>
    public int MaxConcurrentRuns { get; init; } = 16;

    /// <summary>Runs running at once per learner silo (each holds a policy and its optimizer state).</summary>
    public int MaxConcurrentRunsPerSilo { get; init; } = 4;

    /// <summary>
    /// Memory one model may need on a silo, estimated from its config.json before anything is allocated
    /// (<see cref="ModelFootprint"/>): a run's learner (weights, gradients, optimizer state, activations), a pushed model's
    /// weights. 0: this silo's memory.
    /// </summary>
    public long MaxModelMemoryBytes { get; init; }

    /// <summary>Pushes in progress at once (each keeps a partial copy until it ends, is removed, or expires).</summary>
    public int MaxPendingPushes { get; init; } = 64;

    /// <summary>A push in progress that received no byte for this long is removed.</summary>
    public long PendingPushExpirySeconds { get; init; } = 24 * 3600;

    /// <summary>Characters of a run's <c>output_dir</c> (and of its <c>name</c>'s share of the run id: at most 128).</summary>
    public int MaxPathLength { get; init; } = 1024;

    /// <summary><see cref="MaxModelMemoryBytes"/>, or this silo's memory when it is 0.</summary>
    public long ModelMemoryLimit() => MaxModelMemoryBytes > 0 ? MaxModelMemoryBytes : ModelFootprint.HostMemoryBytes;
}

/// <summary>The cluster cannot take the run now (too many runs, or not enough memory on any learner silo).</summary>
[GenerateSerializer]
public sealed class ResourceExhaustedException(string message) : Exception(message);
