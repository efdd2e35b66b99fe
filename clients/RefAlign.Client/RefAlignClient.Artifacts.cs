using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using RefAlign.Artifacts;
using Wire = RefAlign.Client.Protos;

namespace RefAlign.Client;

/// <summary>A stored artifact (see the Artifacts service in the .proto).</summary>
public sealed record ArtifactInfo(string Name, string Kind, long Size, string Sha256, IReadOnlyList<ArtifactFileInfo> Files, DateTimeOffset Created, string Path);

public sealed record ArtifactFileInfo(string Path, long Size, string Sha256);

/// <summary>The artifacts the cluster holds, the bytes they take and the store's quota, and the pushes in progress.</summary>
public sealed record ArtifactListing(IReadOnlyList<ArtifactInfo> Artifacts, long StoredBytes, long QuotaBytes, IReadOnlyList<PendingPushInfo> Pending);

/// <summary>A push in progress: what its header announced, what the silo holds of it, and when it expires.</summary>
public sealed record PendingPushInfo(string Name, string Kind, long Size, string Sha256, long ReceivedBytes, DateTimeOffset Updated, DateTimeOffset Expires);

/// <summary>Bytes moved so far of a push or pull, and in all.</summary>
public sealed record TransferProgress(long Done, long Total);

/// <summary>What a pull wrote: the stream's name, its SHA-256 (checked), and the files under the output folder.</summary>
public sealed record PulledArtifact(string Name, string Sha256, long Size, IReadOnlyList<string> Files);

public sealed partial class RefAlignClient
{
    /// <summary>Bytes per pushed chunk (the silo accepts up to 4 MiB).</summary>
    public const int ArtifactChunkBytes = 1 << 20;

    Wire.Artifacts.ArtifactsClient ArtifactsStub => new(_channel);

    /// <summary>
    /// Pushes a folder (a model, an encoder, a checkpoint, a report) or one file (data) as artifact <paramref name="name"/>.
    /// A dropped connection resumes where the silo's copy ends, up to <see cref="RefAlignClientOptions.WatchMaxReconnects"/>
    /// times in a row; so does a later call with the same name and content.
    /// </summary>
    public async Task<ArtifactInfo> PushArtifactAsync(string path, string name, string kind, IProgress<TransferProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        var entries = ArtifactArchive.Entries(path);
        var size = ArtifactArchive.SizeOf(entries);
        string sha;
        await using (var whole = ArtifactArchive.OpenRead(entries))
            sha = Convert.ToHexStringLower(await SHA256.HashDataAsync(whole, cancellation));
        for (var failures = 0; ; )
        {
            var offset = await GetPushOffsetAsync(name, sha, cancellation);
            try
            {
                return (await PushFromAsync(entries, name, kind, size, sha, offset, progress, cancellation)).FromProto();
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancellation.IsCancellationRequested)
            {
                throw Cancelled(e, cancellation);
            }
            catch (Exception e) when (!cancellation.IsCancellationRequested && failures < Options.WatchMaxReconnects
                                      && (IsTransient(e) || e is RpcException { StatusCode: StatusCode.FailedPrecondition or StatusCode.Aborted }))
            {
                await Task.Delay(Backoff(++failures), cancellation);
            }
        }
    }

    async Task<Wire.Artifact> PushFromAsync(IReadOnlyList<ArtifactArchive.Entry> entries, string name, string kind, long size, string sha, long offset,
        IProgress<TransferProgress>? progress, CancellationToken cancellation)
    {
        using var call = ArtifactsStub.PushArtifact(new CallOptions(_headers, cancellationToken: cancellation));
        await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest
        {
            Header = new Wire.PushHeader { Name = name, Kind = kind, Size = size, Sha256 = sha, Offset = offset },
        }, cancellation);
        await using (var tar = ArtifactArchive.OpenRead(entries))
        {
            progress?.Report(new TransferProgress(offset, size));
            await foreach (var (at, data) in ArtifactArchive.ChunksFrom(tar, offset, new byte[ArtifactChunkBytes], cancellation: cancellation))
            {
                try
                {
                    await call.RequestStream.WriteAsync(new Wire.PushArtifactRequest
                    {
                        Chunk = new Wire.Chunk { Offset = at, Data = ByteString.CopyFrom(data.Span), Sha256 = Convert.ToHexStringLower(SHA256.HashData(data.Span)) },
                    }, cancellation);
                }
                catch (Exception e) when (e is RpcException or InvalidOperationException or IOException)
                {
                    // The silo ended the call (a refused chunk, quota): its status says why.
                    break;
                }
                progress?.Report(new TransferProgress(at + data.Length, size));
            }
        }
        try { await call.RequestStream.CompleteAsync(); }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException) { }
        return await call.ResponseAsync;
    }

    /// <summary>Bytes of an interrupted push of this name and content that the silo holds.</summary>
    public async Task<long> GetPushOffsetAsync(string name, string sha256, CancellationToken cancellation = default) =>
        (await Unary(o => ArtifactsStub.GetPushOffsetAsync(new Wire.PushOffsetRequest { Name = name, Sha256 = sha256 }, o), cancellation, idempotent: true))
        .ReceivedBytes;

    public async Task<ArtifactListing> ListArtifactsAsync(string prefix = "", CancellationToken cancellation = default)
    {
        var reply = await Unary(o => ArtifactsStub.ListArtifactsAsync(new Wire.ListArtifactsRequest { Prefix = prefix }, o), cancellation, idempotent: true);
        return new ArtifactListing([.. reply.Artifacts.Select(a => a.FromProto())], reply.StoredBytes, reply.QuotaBytes,
            [.. reply.Pending.Select(p => new PendingPushInfo(p.Name, p.Kind, p.Size, p.Sha256, p.ReceivedBytes,
                p.Updated?.ToDateTimeOffset() ?? default, p.Expires?.ToDateTimeOffset() ?? default))]);
    }

    /// <summary>
    /// Removes the name (operator role), and any push in progress under it; the silo keeps the files while a running run
    /// reads them.
    /// </summary>
    public async Task<ArtifactInfo> DeleteArtifactAsync(string name, CancellationToken cancellation = default) =>
        (await Unary(o => ArtifactsStub.DeleteArtifactAsync(new Wire.ArtifactRef { Name = name }, o), cancellation)).FromProto();

    /// <summary>Pulls artifact <paramref name="name"/> into <paramref name="outDir"/> (new or empty), checked against its SHA-256.</summary>
    public Task<PulledArtifact> PullArtifactAsync(string name, string outDir, IProgress<TransferProgress>? progress = null, CancellationToken cancellation = default) =>
        PullAsync((offset, o) => ArtifactsStub.PullArtifact(new Wire.PullArtifactRequest { Name = name, Offset = offset }, o), outDir, progress, cancellation);

    /// <summary>
    /// Pulls a run's checkpoint (<c>latest</c> or <c>step-N</c>) as the Hugging Face folder it holds (or its LoRA
    /// adapter) into <paramref name="outDir"/> (new or empty).
    /// </summary>
    public Task<PulledArtifact> PullRunAsync(string runId, string checkpoint, string outDir, IProgress<TransferProgress>? progress = null,
        CancellationToken cancellation = default) =>
        PullAsync((offset, o) => ArtifactsStub.PullRun(new Wire.PullRunRequest { RunId = runId, Checkpoint = checkpoint, Offset = offset }, o),
            outDir, progress, cancellation);

    /// <summary>
    /// Receives a tar stream into a partial file beside the output (resuming by offset after a dropped connection),
    /// checks its SHA-256, then unpacks it.
    /// </summary>
    async Task<PulledArtifact> PullAsync(Func<long, CallOptions, AsyncServerStreamingCall<Wire.ArtifactChunk>> open, string outDir,
        IProgress<TransferProgress>? progress, CancellationToken cancellation)
    {
        var output = System.IO.Path.GetFullPath(outDir);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
            throw new ArgumentException($"--out '{outDir}' is not empty; pull into a new or empty folder.");
        if (File.Exists(output)) throw new ArgumentException($"--out '{outDir}' is a file; name a folder.");
        var partial = output.TrimEnd(System.IO.Path.DirectorySeparatorChar) + ".refalign-pull.part";
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(partial)!);
        try { return await PullIntoAsync(open, output, partial, progress, cancellation); }
        finally { File.Delete(partial); }
    }

    async Task<PulledArtifact> PullIntoAsync(Func<long, CallOptions, AsyncServerStreamingCall<Wire.ArtifactChunk>> open, string output, string partial,
        IProgress<TransferProgress>? progress, CancellationToken cancellation)
    {
        await using (var file = new FileStream(partial, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16))
        {
            string? name = null, sha = null;
            for (var failures = 0; sha is null;)
            {
                using var call = open(file.Length, new CallOptions(_headers, cancellationToken: cancellation));
                try
                {
                    while (await call.ResponseStream.MoveNext(cancellation))
                    {
                        var chunk = call.ResponseStream.Current;
                        if (chunk.Offset != file.Length) throw new IOException($"the silo sent bytes from {chunk.Offset}, expected {file.Length}.");
                        await file.WriteAsync(chunk.Data.Memory, cancellation);
                        name = chunk.Name;
                        progress?.Report(new TransferProgress(file.Length, chunk.Size));
                        if (chunk.Sha256.Length > 0) sha = chunk.Sha256;
                    }
                    if (sha is null) throw new IOException("the pull ended before its last chunk.");
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancellation.IsCancellationRequested)
                {
                    throw Cancelled(e, cancellation);
                }
                catch (Exception e) when (!cancellation.IsCancellationRequested && failures < Options.WatchMaxReconnects && (IsTransient(e) || e is IOException))
                {
                    await Task.Delay(Backoff(++failures), cancellation);
                }
            }
            file.Position = 0;
            var actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancellation));
            if (actual != sha)
                throw new InvalidDataException($"the pulled stream of '{name}' hashes to {actual}, not the silo's {sha}; pull again.");
            file.Position = 0;
            var files = ArtifactArchive.Extract(file, output);
            return new PulledArtifact(name ?? "", sha, file.Length, [.. files.Select(f => f.Path)]);
        }
    }
}

static class ArtifactMapping
{
    public static ArtifactInfo FromProto(this Wire.Artifact a) =>
        new(a.Name, a.Kind, a.Size, a.Sha256, [.. a.Files.Select(f => new ArtifactFileInfo(f.Path, f.Size, f.Sha256))],
            a.Created?.ToDateTimeOffset() ?? default, a.Path);
}
