using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using RefAlign.Compute.Formats;
using RefAlign.Contracts.Grains;
using RefAlign.Contracts.Messages;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>
/// A silo's copies of the learner's weight versions, fetched once per (run, version) however many replicas on the silo
/// need them, and relayed onward: while a version arrives, this silo's <see cref="WeightExchange"/> already serves it to
/// the next generator silo in the learner's chain, so the learner sends each version once. Bytes are received straight
/// into one buffer and hashed as they land; a replica applies them only after the whole digest matched the manifest.
/// Buffers come from the silo's <see cref="WeightBuffers"/> and go back once no replica, stream or fill reads them (see
/// <see cref="WeightPublication"/>'s holds), so in steady state a version lands in memory that is already resident.
/// </summary>
/// <remarks>
/// Sources, in order: the upstream the learner's chain names (a previous silo, or the learner), the learner's own stream,
/// then Orleans chunks. A relay's downstream checks the digest itself, so a broken or lying upstream costs a retry,
/// never a wrong weight. The latest two versions of a run stay (a pipelined run samples one behind).
/// </remarks>
public sealed class ReplicaWeights(WeightExchange exchange, ILogger<ReplicaWeights> logger)
{
    static readonly TimeSpan IdleRunKept = TimeSpan.FromMinutes(10);

    sealed class Fetch(Task<WeightSnapshot> task, WeightPublication buffer, bool relayed)
    {
        public Task<WeightSnapshot> Task { get; } = task;
        /// <summary>The bytes; this entry holds them until it is evicted.</summary>
        public WeightPublication Buffer { get; } = buffer;
        public bool Relayed { get; } = relayed;
        public DateTime Used { get; set; } = DateTime.UtcNow;
    }

    // Keyed by the digest too: a version number reused after a checkpoint load names different bytes.
    readonly ConcurrentDictionary<(string Run, long Version, string Digest), Fetch> _fetches = new();
    readonly Lock _gate = new();
    /// <summary>The newest learner epoch seen per run: weights an older learner publishes are not taken.</summary>
    readonly ConcurrentDictionary<string, long> _epochs = new(StringComparer.Ordinal);

    /// <summary>
    /// Version <paramref name="manifest"/> of the run's weights, verified: from the learner's exchange in place when the
    /// learner is on this silo, from this silo's copy when a replica here already fetched it, else fetched (and relayed).
    /// Dispose the lease once the bytes are applied: until then its buffer is not reused.
    /// </summary>
    public async Task<WeightLease> GetAsync(ILearnerGrain learner, string runId, WeightsManifest manifest)
    {
        var newest = _epochs.AddOrUpdate(runId, manifest.Epoch, (_, seen) => Math.Max(seen, manifest.Epoch));
        if (manifest.Epoch < newest) throw new FencedLearnerException(runId, manifest.Epoch, newest);
        if (manifest.StreamAddress is { } address && exchange.HoldLocal(address) is { } local) return new WeightLease(local.Snapshot!, local);
        var key = (runId, manifest.Version, manifest.Digest);
        while (true)
        {
            Fetch fetch;
            lock (_gate)
            {
                if (!_fetches.TryGetValue(key, out fetch!))
                {
                    // The versions this one makes stale go first: once unread, their buffers take this one's bytes.
                    Evict(runId, manifest.Version);
                    var (buffer, relayAddress) = exchange.BeginRelay(runId, manifest.Version, manifest.TotalBytes);
                    buffer.TryHold(); // the fill's own, released when it ends
                    fetch = new Fetch(FetchAsync(learner, runId, manifest, buffer, relayAddress), buffer, relayAddress is not null);
                    _fetches[key] = fetch;
                }
                fetch.Used = DateTime.UtcNow;
            }
            WeightSnapshot snapshot;
            try { snapshot = await fetch.Task; }
            catch
            {
                // A failed fetch is not kept: the replica's retry starts a fresh one.
                if (_fetches.TryRemove(new KeyValuePair<(string, long, string), Fetch>(key, fetch))) Drop(key.runId, key.Version, fetch);
                throw;
            }
            if (fetch.Buffer.TryHold()) return new WeightLease(snapshot, fetch.Buffer);
            // Evicted (and its buffer reused) between its end and this read: fetch it again.
        }
    }

    /// <summary>Readies this silo's receive buffers for a replica of <paramref name="bytes"/> (see <see cref="WeightBuffers.Prepare"/>).</summary>
    public void Prepare(long bytes) => exchange.Buffers.Prepare(bytes, WeightBuffers.MaxSpares);

    async Task<WeightSnapshot> FetchAsync(ILearnerGrain learner, string runId, WeightsManifest manifest, WeightPublication buffer, string? relayAddress)
    {
        try
        {
            var entries = manifest.Entries.Select(e => e.ToCompute()).ToList();
            if ((entries.Count == 0 ? 0 : entries.Max(e => e.Offset + e.Length)) != manifest.TotalBytes)
                throw new InvalidDataException($"weights of {runId} version {manifest.Version}: the index does not describe {manifest.TotalBytes} bytes.");
            var data = buffer.Data;
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            List<string> sources = [];
            if (relayAddress is not null && await UpstreamAsync(learner, runId, manifest.Version, relayAddress) is { } upstream) sources.Add(upstream);
            if (manifest.StreamAddress is { } origin && !sources.Contains(origin)) sources.Add(origin);
            var joined = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            foreach (var source in sources)
                if (await FromStreamAsync(source, data, manifest, buffer))
                {
                    // The split a slow sync is read from: the chain call, then the stream with its digest.
                    logger.LogInformation("weights of {Run} version {Version}: {Bytes} bytes from {Source} (join {JoinMs:F0} ms, stream and digest {StreamMs:F0} ms)",
                        runId, manifest.Version, manifest.TotalBytes, new Uri(source).Authority, joined,
                        System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds - joined);
                    return Completed(new WeightSnapshot(entries, data), buffer);
                }
            await FromChunksAsync(learner, manifest, data);
            var chunked = new WeightSnapshot(entries, data);
            if (Matches(manifest, await Task.Run(chunked.Digest), "chunks")) return Completed(chunked, buffer);
            throw new InvalidDataException($"weights of {runId} version {manifest.Version} did not match their digest ({manifest.Digest}) by stream or chunks.");
        }
        catch
        {
            // Readers relaying from this silo are cut and fall back to the learner.
            buffer.Progress.Fail();
            throw;
        }
        finally { buffer.Release(); }
    }

    static WeightSnapshot Completed(WeightSnapshot snapshot, WeightPublication buffer)
    {
        buffer.Complete(snapshot);
        return snapshot;
    }

    async Task<string?> UpstreamAsync(ILearnerGrain learner, string runId, long version, string relayAddress)
    {
        try { return await learner.JoinRelay(version, relayAddress); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogWarning(e, "joining the relay of {Run} version {Version} failed; fetching from the learner", runId, version);
            return null;
        }
    }

    /// <summary>
    /// One stream attempt into <paramref name="data"/>, hashed while it arrives; true when complete and matching the
    /// manifest's digest. What lands is forwarded to <paramref name="relay"/>'s readers at once.
    /// </summary>
    async Task<bool> FromStreamAsync(string source, byte[] data, WeightsManifest manifest, WeightPublication relay)
    {
        var landed = new FillProgress();
        using var stop = new CancellationTokenSource();
        // Off the grain's scheduler: socket reads and hashing are plain thread-pool work.
        var hashing = manifest.Digest.Length == 0 ? Task.FromResult("") : Task.Run(() => landed.DigestAsync(data, data.LongLength, stop.Token));
        try
        {
            var complete = await Task.Run(() => WeightExchange.FetchIntoAsync(source, data, n =>
            {
                landed.Advance(n);
                relay.Progress.Advance(n);
            }));
            if (!complete)
            {
                logger.LogWarning("weight stream {Address} no longer holds version {Version}", source, manifest.Version);
                return false;
            }
            return Matches(manifest, await hashing, $"stream {source}");
        }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or IOException or OperationCanceledException)
        {
            logger.LogWarning(e, "weight stream {Address} failed", source);
            return false;
        }
        finally
        {
            await stop.CancelAsync();
            landed.Fail();
            try { await hashing; }
            catch (Exception e) when (e is IOException or OperationCanceledException) { }
        }
    }

    bool Matches(WeightsManifest manifest, string digest, string how)
    {
        if (manifest.Digest.Length == 0 || digest == manifest.Digest) return true;
        logger.LogWarning("weights of version {Version} by {How} have digest {Actual}, not the manifest's {Expected}; not applied",
            manifest.Version, how, digest, manifest.Digest);
        return false;
    }

    /// <summary>Orleans chunk calls straight into <paramref name="data"/>, several in flight to hide each round trip.</summary>
    static async Task FromChunksAsync(ILearnerGrain learner, WeightsManifest manifest, byte[] data)
    {
        long at = 0;
        using var inFlight = new SemaphoreSlim(4);
        await Task.WhenAll(Enumerable.Range(0, manifest.ChunkCount).Select(async i =>
        {
            await inFlight.WaitAsync();
            try
            {
                var chunk = await learner.GetWeightsChunk(manifest.Version, i);
                var start = (long)i * manifest.ChunkBytes;
                if (start + chunk.LongLength > data.LongLength)
                    throw new InvalidDataException($"weights chunk {i} runs past the {data.LongLength} bytes of version {manifest.Version}.");
                chunk.CopyTo(data, start);
                Interlocked.Add(ref at, chunk.LongLength);
            }
            finally { inFlight.Release(); }
        }));
        if (at != data.LongLength)
            throw new InvalidDataException($"weights of version {manifest.Version}: chunks held {at} bytes, the manifest says {data.LongLength}.");
    }

    /// <summary>Keeps a run's latest two versions (a pipelined run samples one behind) and drops runs idle for a while.</summary>
    void Evict(string runId, long version)
    {
        var now = DateTime.UtcNow;
        foreach (var (key, fetch) in _fetches)
        {
            var stale = key.Run == runId ? key.Version < version - 1 : now - fetch.Used > IdleRunKept;
            if (stale && _fetches.TryRemove(new KeyValuePair<(string, long, string), Fetch>(key, fetch))) Drop(key.Run, key.Version, fetch);
        }
    }

    /// <summary>Withdraws a fetch that left the cache: its relay stops being served and the cache's hold ends.</summary>
    void Drop(string runId, long version, Fetch fetch)
    {
        if (fetch.Relayed) exchange.Retract(runId, version, fetch.Buffer);
        fetch.Buffer.Release();
    }
}
