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

    /// <summary>Bytes <see cref="WriteTo"/> writes.</summary>
    public long Size { get; }

    public static ArtifactStream Of(ArtifactStore store, ArtifactRecord record) => new(store.ObjectEntries(record));

    /// <summary>Every file of <paramref name="folder"/> (hidden ones left out, as a push leaves them out).</summary>
    public static ArtifactStream OfFolder(string folder) => new(ArtifactArchive.Entries(folder));

    public void WriteTo(Stream output) => ArtifactArchive.Write(_entries, output);

    /// <summary>The stream to read from, produced a few blocks ahead (see <see cref="ArtifactArchive.OpenRead"/>).</summary>
    public Stream OpenRead() => ArtifactArchive.OpenRead(_entries);
}
