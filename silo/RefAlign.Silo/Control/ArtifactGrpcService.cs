using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Grains.Artifacts;
using RefAlign.Runtime;
using Wire = RefAlign.Client.Protos;

namespace RefAlign.Silo.Control;

/// <summary>
/// The gRPC face of the <see cref="ArtifactStore"/>: pushes are checked chunk by chunk and committed only whole and
/// valid; pulls stream the same tar form, from any offset. Errors map as the .proto lists them.
/// </summary>
internal sealed class ArtifactGrpcService(RunHostOptions host, IRunControl control) : Wire.Artifacts.ArtifactsBase
{
    /// <summary>Bytes per pulled chunk (pushes choose their own, up to the silo's message limit).</summary>
    public const int ChunkBytes = 1 << 20;

    /// <summary>Trailer of a FAILED_PRECONDITION push: the bytes the silo holds, where the push must resume.</summary>
    public const string ReceivedBytesTrailer = StatusMapping.ReceivedBytesTrailer;

    public override Task<Wire.Artifact> PushArtifact(IAsyncStreamReader<Wire.PushArtifactRequest> requestStream, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var ct = context.CancellationToken;
            if (!await requestStream.MoveNext(ct) || requestStream.Current.PartCase != Wire.PushArtifactRequest.PartOneofCase.Header)
                throw new InvalidArtifactException("header", "a push starts with a header (name, kind, size, sha256, offset).");
            var h = requestStream.Current.Header;
            var store = host.Artifacts();
            using var upload = store.BeginPush(h.Name, h.Kind, h.Size, h.Sha256, h.Offset);
            while (await requestStream.MoveNext(ct))
            {
                var part = requestStream.Current;
                if (part.PartCase != Wire.PushArtifactRequest.PartOneofCase.Chunk) throw new InvalidArtifactException("chunk", "after the header a push sends chunks only.");
                upload.Append(part.Chunk.Offset, part.Chunk.Data.Span, part.Chunk.Sha256);
            }
            // Unpacking, hashing and the checks (config.json and the weight files' headers: no module is built) are file
            // work, off the request thread.
            var maxModel = host.Limits.ModelMemoryLimit();
            var record = await Task.Run(() => upload.Complete((kind, folder, files) => ArtifactValidation.Validate(h.Name, kind, folder, files, maxModel)), ct);
            return ToProto(record, store);
        });

    public override Task<Wire.PushOffsetReply> GetPushOffset(Wire.PushOffsetRequest request, ServerCallContext context) =>
        Guard(context, () => Task.FromResult(new Wire.PushOffsetReply { ReceivedBytes = host.Artifacts().ReceivedBytes(request.Name, request.Sha256) }));

    public override Task<Wire.ListArtifactsReply> ListArtifacts(Wire.ListArtifactsRequest request, ServerCallContext context) =>
        Guard(context, () =>
        {
            var store = host.Artifacts();
            var reply = new Wire.ListArtifactsReply { StoredBytes = store.StoredBytes(), QuotaBytes = store.MaxStoreBytes };
            reply.Artifacts.Add(store.List(request.Prefix).Select(a => ToProto(a, store)));
            reply.Pending.Add(store.Pending().Where(p => p.Name.StartsWith(request.Prefix, StringComparison.Ordinal)).Select(p => new Wire.PendingPush
            {
                Name = p.Name, Kind = p.Kind, Size = p.Size, Sha256 = p.Sha256, ReceivedBytes = p.ReceivedBytes,
                Updated = Timestamp.FromDateTimeOffset(p.Updated), Expires = Timestamp.FromDateTimeOffset(p.Expires),
            }));
            return Task.FromResult(reply);
        });

    public override Task<Wire.Artifact> DeleteArtifact(Wire.ArtifactRef request, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var store = host.Artifacts();
            // A run that may still read the files keeps them (its config holds their resolved path); the name goes regardless.
            var live = (await control.ListRunsAsync(context.CancellationToken))
                .Where(r => r.Status is RunStatus.Pending or RunStatus.Running or RunStatus.Stopping).Select(r => r.ConfigJson).ToList();
            var record = store.Delete(request.Name, folder => live.Any(c => c.Contains(folder, StringComparison.Ordinal)));
            return ToProto(record, store);
        });

    public override Task PullArtifact(Wire.PullArtifactRequest request, IServerStreamWriter<Wire.ArtifactChunk> responseStream, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var store = host.Artifacts();
            var record = store.Get(request.Name);
            await SendAsync(ArtifactStream.Of(store, record), record.Name, request.Offset, responseStream, context.CancellationToken);
            return new Wire.Artifact();
        });

    public override Task PullRun(Wire.PullRunRequest request, IServerStreamWriter<Wire.ArtifactChunk> responseStream, ServerCallContext context) =>
        Guard(context, async () =>
        {
            if (string.IsNullOrWhiteSpace(request.RunId)) throw new InvalidArtifactException("run_id", "field 'run_id' must be set.");
            var run = await control.GetRunAsync(request.RunId, context.CancellationToken);
            var checkpoint = CheckpointOf(run, string.IsNullOrWhiteSpace(request.Checkpoint) ? "latest" : request.Checkpoint.Trim());
            // The Hugging Face folder (or the LoRA adapter): what a trainer loads, not the optimizer and RNG state.
            var model = new[] { "policy", "adapter" }.Select(f => Path.Combine(checkpoint, f)).FirstOrDefault(Directory.Exists)
                        ?? throw new InvalidOperationException($"checkpoint '{checkpoint}' holds neither policy/ nor adapter/.");
            await SendAsync(ArtifactStream.OfFolder(model), $"{run.RunId}/{Path.GetFileName(checkpoint)}", request.Offset, responseStream, context.CancellationToken);
            return new Wire.Artifact();
        });

    /// <summary>The folder of checkpoint <paramref name="name"/> of <paramref name="run"/>, resolved as <c>run eval</c> resolves it.</summary>
    string CheckpointOf(RunSummary run, string name) =>
        RunEvaluationRequests.Checkpoint(run, host.CheckpointFolder(run.RunId, RunConfig.Parse(run.ConfigJson, "config")), name, "checkpoint");

    /// <summary>
    /// Streams <paramref name="source"/> from <paramref name="offset"/> in <see cref="ChunkBytes"/> chunks; the whole is
    /// hashed (skipped bytes too), and the last chunk carries the hash.
    /// </summary>
    static async Task SendAsync(ArtifactStream source, string name, long offset, IServerStreamWriter<Wire.ArtifactChunk> output, CancellationToken ct)
    {
        if (offset < 0 || offset > source.Size) throw new InvalidArtifactException("offset", $"field 'offset' is {offset}; the stream has {source.Size} bytes.");
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long position = 0;
        Wire.ArtifactChunk? pending = null;
        await foreach (var (at, data) in source.ChunksFrom(offset, new byte[ChunkBytes], read => { sha.AppendData(read.Span); position += read.Length; }, ct))
        {
            if (pending is not null) await output.WriteAsync(pending, ct);
            pending = new Wire.ArtifactChunk { Offset = at, Data = ByteString.CopyFrom(data.Span), Size = source.Size, Name = name };
        }
        if (position != source.Size) throw new IOException($"'{name}' changed while it was being sent ({position} of {source.Size} bytes).");
        pending ??= new Wire.ArtifactChunk { Offset = position, Size = source.Size, Name = name };
        pending.Sha256 = Convert.ToHexStringLower(sha.GetHashAndReset());
        await output.WriteAsync(pending, ct);
    }

    static Wire.Artifact ToProto(ArtifactRecord a, ArtifactStore store)
    {
        var w = new Wire.Artifact { Name = a.Name, Kind = a.Kind, Size = a.Size, Sha256 = a.Sha256, Created = Timestamp.FromDateTimeOffset(a.Created), Path = store.PathOf(a) };
        w.Files.Add(a.Files.Select(f => new Wire.ArtifactFile { Path = f.Path, Size = f.Size, Sha256 = f.Sha256 }));
        return w;
    }

    /// <summary>The store's exceptions as the status codes the .proto documents (<see cref="StatusMapping"/>).</summary>
    static Task<T> Guard<T>(ServerCallContext context, Func<Task<T>> body) => StatusMapping.Guard(context, body);
}
