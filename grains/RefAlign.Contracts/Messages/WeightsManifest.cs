namespace RefAlign.Contracts.Messages;

/// <summary>Where one tensor sits in a weight set's bytes: name, dtype (TorchSharp's name), shape, offset and length.</summary>
[GenerateSerializer, Immutable]
public sealed record TensorEntry(
    [property: Id(0)] string Name,
    [property: Id(1)] string DType,
    [property: Id(2)] long[] Shape,
    [property: Id(3)] long Offset,
    [property: Id(4)] long Length);

/// <summary>
/// The index of a published weight version. The bytes come either from <see cref="StreamAddress"/> in one stream (the
/// learner silo's weight server, <c>tcp://host:port/run/version/token</c>, near raw TCP speed) or, when that is absent
/// or fails, in <see cref="ChunkCount"/> Orleans chunk calls. <see cref="Digest"/> is the weights' integrity digest
/// (<c>xxh128t:</c> hex, the root of a tree of block digests; empty for none): bytes that do not match it (a truncated or corrupted transfer) are never applied.
/// <see cref="Epoch"/> is the publishing learner's: a replica that saw a newer epoch for the run refuses an older one.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record WeightsManifest(
    [property: Id(0)] long Version,
    [property: Id(1)] int ChunkCount,
    [property: Id(2)] int ChunkBytes,
    [property: Id(3)] long TotalBytes,
    [property: Id(4)] IReadOnlyList<TensorEntry> Entries,
    [property: Id(5)] string? StreamAddress = null,
    [property: Id(6)] string Digest = "",
    [property: Id(7)] long Epoch = 0);
