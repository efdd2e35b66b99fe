using System.Security.Cryptography;
using System.Text.Json;
using RefAlign.Artifacts;
using RefAlign.Compute.Formats;

namespace RefAlign.Grains.Artifacts;

public sealed partial class ArtifactStore
{
    string PartFile(string sha256) => Path.Combine(_uploads, sha256 + ".part");

    string PendingFile(string sha256) => Path.Combine(_uploads, sha256 + ".json");

    /// <summary>Bytes of an interrupted push of (<paramref name="name"/>, <paramref name="sha256"/>) the store holds.</summary>
    public long ReceivedBytes(string name, string sha256)
    {
        CheckName(name);
        CheckSha(sha256, "sha256");
        var part = new FileInfo(PartFile(sha256));
        return part.Exists && File.Exists(PendingFile(sha256)) ? part.Length : 0;
    }

    /// <summary>
    /// Starts or resumes a push; everything is checked (name, kind, quotas, where it resumes) before a byte is stored.
    /// The upload holds the partial copy's file exclusively until disposed.
    /// </summary>
    public ArtifactUpload BeginPush(string name, string kind, long size, string sha256, long offset)
    {
        CheckName(name);
        CheckKind(kind);
        CheckSha(sha256, "sha256");
        if (size < 3 * ArtifactArchive.Block) throw new InvalidArtifactException("size", $"field 'size' is {size}; a tar stream of one file has at least {3 * ArtifactArchive.Block} bytes.");
        if (offset < 0 || offset > size) throw new InvalidArtifactException("offset", $"field 'offset' is {offset}; it must be in 0..{size}.");
        if (size > MaxArtifactBytes)
            throw new ResourceExhaustedException($"artifact '{name}' is {size} bytes, over the limit of {MaxArtifactBytes} per artifact (Limits:MaxArtifactBytes).");
        Directory.CreateDirectory(_uploads);
        // Content the store already holds costs nothing more; a resumed push is already counted.
        var adds = Directory.Exists(Path.Combine(_objects, sha256)) || File.Exists(PendingFile(sha256)) ? 0 : size;
        var stored = StoredBytes();
        if (stored + adds > MaxStoreBytes)
            throw new ResourceExhaustedException(
                $"artifact '{name}' ({size} bytes) does not fit: the store holds {stored} of {MaxStoreBytes} bytes (Limits:MaxArtifactStoreBytes); remove some (refalign artifact rm).");
        FileStream part;
        try { part = new FileStream(PartFile(sha256), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1 << 16); }
        catch (IOException e) { throw new ArtifactBusyException($"another push of the same content ({sha256[..12]}…) is in progress; try again when it ends.", e); }
        if (part.Length != offset)
        {
            var held = part.Length;
            part.Dispose();
            throw new PushOffsetMismatchException(held, offset);
        }
        ModelWeights.WriteAtomically(PendingFile(sha256), JsonSerializer.Serialize(new PendingPush(name, kind, size, sha256), ArtifactRecord.Json));
        part.Position = offset;
        return new ArtifactUpload(this, new PendingPush(name, kind, size, sha256), part);
    }

    /// <summary>
    /// The push is whole: its hash is checked, it is unpacked beside the objects, validated by
    /// <paramref name="validate"/> (kind, folder, files), moved into place and named. A bad stream or content discards
    /// the partial copy (pushing it again cannot help); a good one is visible only once named.
    /// </summary>
    internal ArtifactRecord Commit(PendingPush push, FileStream part, Action<string, string, IReadOnlyList<ArtifactFileRecord>> validate)
    {
        var temp = Path.Combine(_objects, $".tmp-{push.Sha256}-{Guid.NewGuid():N}");
        try
        {
            part.Flush(flushToDisk: true);
            part.Position = 0;
            var whole = Convert.ToHexStringLower(SHA256.HashData(part));
            if (whole != push.Sha256)
                throw new ArtifactDataLossException($"the pushed stream's SHA-256 is {whole}, not the announced {push.Sha256}; the push is discarded, push again.");
            part.Position = 0;
            IReadOnlyList<ArtifactArchive.Extracted> files;
            try { files = ArtifactArchive.Extract(part, temp); }
            catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
            {
                throw new InvalidArtifactException("chunk", $"artifact '{push.Name}' is not a tar stream of plain files: {e.Message}", e);
            }
            IReadOnlyList<ArtifactFileRecord> listed = [.. files.Select(f => new ArtifactFileRecord(f.Path, f.Size, f.Sha256))];
            validate(push.Kind, temp, listed);
            var folder = Path.Combine(_objects, push.Sha256);
            try { Directory.Move(temp, folder); }
            catch (IOException) when (Directory.Exists(folder)) { Directory.Delete(temp, recursive: true); } // stored before, by another name
            var record = new ArtifactRecord(push.Name, push.Kind, push.Size, push.Sha256, listed, DateTimeOffset.UtcNow);
            var nameFile = NameFile(push.Name);
            Directory.CreateDirectory(Path.GetDirectoryName(nameFile)!);
            ModelWeights.WriteAtomically(nameFile, JsonSerializer.Serialize(record, ArtifactRecord.Json));
            Discard(push.Sha256);
            return record;
        }
        catch (Exception e) when (e is ArtifactDataLossException or InvalidArtifactException)
        {
            Discard(push.Sha256);
            throw;
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    void Discard(string sha256)
    {
        File.Delete(PendingFile(sha256));
        File.Delete(PartFile(sha256));
    }
}

/// <summary>
/// A push in progress: chunks are checked (offset, size, SHA-256) and appended to the partial copy, which survives a
/// dropped connection; <see cref="Complete"/> makes it an artifact.
/// </summary>
public sealed class ArtifactUpload(ArtifactStore store, PendingPush push, FileStream part) : IDisposable
{
    bool _done;

    public long Size => push.Size;

    /// <summary>Bytes held so far (where the next chunk must start).</summary>
    public long Received => part.Position;

    public void Append(long offset, ReadOnlySpan<byte> data, string sha256)
    {
        if (offset != Received) throw new InvalidArtifactException("chunk.offset", $"a chunk starts at byte {offset}, but the next expected is {Received}.");
        if (data.Length == 0) throw new InvalidArtifactException("chunk.data", "a chunk is empty.");
        if (Received + data.Length > Size)
            throw new InvalidArtifactException("chunk.data", $"the chunks run past the announced size of {Size} bytes.");
        var actual = Convert.ToHexStringLower(SHA256.HashData(data));
        if (!string.Equals(actual, sha256, StringComparison.Ordinal))
            throw new ArtifactDataLossException(
                $"the chunk at byte {offset} ({data.Length} bytes) does not match its SHA-256 and was not stored; the silo keeps the {offset} bytes before it, resume from there.");
        part.Write(data);
        part.Flush();
    }

    /// <summary>Checks that every byte came, then commits (see <see cref="ArtifactStore"/>); returns the named artifact.</summary>
    public ArtifactRecord Complete(Action<string, string, IReadOnlyList<ArtifactFileRecord>> validate)
    {
        if (Received != Size)
            throw new IncompletePushException($"the push ended after {Received} of {Size} bytes; the silo keeps them, resume from byte {Received}.");
        _done = true;
        return store.Commit(push, part, validate);
    }

    public void Dispose()
    {
        if (!_done) part.Flush();
        part.Dispose();
    }
}

/// <summary>Another push of the same content holds its partial copy.</summary>
public sealed class ArtifactBusyException(string message, Exception inner) : Exception(message, inner);

/// <summary>A push whose stream ended before its announced size.</summary>
public sealed class IncompletePushException(string message) : Exception(message);
