using RefAlign.Artifacts;

namespace RefAlign.Grains.Artifacts;

/// <summary>The tar stream of a stored artifact or of a folder (a run's checkpoint), as a pull sends it.</summary>
public sealed class ArtifactStream
{
    readonly IReadOnlyList<ArtifactArchive.Entry> _entries;

    ArtifactStream(IReadOnlyList<ArtifactArchive.Entry> entries)
    {
        _entries = entries;
        Size = ArtifactArchive.SizeOf(entries);
    }

    /// <summary>Bytes of the stream.</summary>
    public long Size { get; }

    public static ArtifactStream Of(ArtifactStore store, ArtifactRecord record) => new(store.ObjectEntries(record));

    /// <summary>Every file of <paramref name="folder"/> (hidden ones left out, as a push leaves them out).</summary>
    public static ArtifactStream OfFolder(string folder) => new(ArtifactArchive.Entries(folder));

    /// <summary>The stream to read from, produced a few blocks ahead (see <see cref="ArtifactArchive.OpenRead"/>).</summary>
    public Stream OpenRead() => ArtifactArchive.OpenRead(_entries);

    /// <summary>The stream's pieces from <paramref name="offset"/> on (see <see cref="ArtifactArchive.ChunksFrom"/>).</summary>
    public async IAsyncEnumerable<(long Offset, ReadOnlyMemory<byte> Data)> ChunksFrom(long offset, byte[] buffer, Action<ReadOnlyMemory<byte>>? read = null,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation = default)
    {
        await using var tar = OpenRead();
        await foreach (var chunk in ArtifactArchive.ChunksFrom(tar, offset, buffer, read, cancellation)) yield return chunk;
    }
}
