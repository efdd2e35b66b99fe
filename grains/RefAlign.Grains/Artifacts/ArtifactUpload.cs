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
    /// Pushes in progress, oldest first; those that received no byte for <see cref="PendingExpiry"/> are removed on the
    /// way (a push that was given up must not hold its bytes, or a place among <see cref="MaxPendingPushes"/>, forever).
    /// </summary>
    public IReadOnlyList<PendingUpload> Pending()
    {
        if (!Directory.Exists(_uploads)) return [];
        var now = DateTimeOffset.UtcNow;
        var found = new List<PendingUpload>();
        foreach (var file in Directory.EnumerateFiles(_uploads, "*.json"))
        {
            PendingPush? push;
            try { push = JsonSerializer.Deserialize<PendingPush>(File.ReadAllText(file), ArtifactRecord.Json); }
            catch (Exception e) when (e is JsonException or IOException) { push = null; }
            var sha = Path.GetFileNameWithoutExtension(file);
            var part = new FileInfo(PartFile(sha));
            // The part file's time is its last received byte; a record without one is a push that never began writing.
            var updated = new DateTimeOffset(part.Exists ? part.LastWriteTimeUtc : File.GetLastWriteTimeUtc(file), TimeSpan.Zero);
            if (push is null || updated + PendingExpiry <= now)
            {
                Discard(sha);
                continue;
            }
            found.Add(new PendingUpload(push.Name, push.Kind, push.Size, push.Sha256, part.Exists ? part.Length : 0, updated, updated + PendingExpiry));
        }
        return [.. found.OrderBy(p => p.Updated)];
    }

    /// <summary>
    /// Starts or resumes a push; everything is checked (name, kind, limits, where it resumes) before a byte is stored.
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
        var pending = Pending();
        var resumed = pending.Any(p => p.Sha256 == sha256);
        if (!resumed && pending.Count >= MaxPendingPushes)
            throw new ResourceExhaustedException(
                $"{pending.Count} pushes are in progress, the most this silo keeps (Limits:MaxPendingPushes); finish or remove one (refalign artifact rm <name>), or wait: one without a byte for {PendingExpiry.TotalHours:0.##} h is removed.");
        // Only bytes count against the store: content it already holds costs nothing more, and a push counts what it has
        // received (checked again with every chunk), so a header announcing a size reserves nothing.
        var stored = ObjectBytes() + pending.Sum(p => p.ReceivedBytes);
        var adds = Directory.Exists(Path.Combine(_objects, sha256)) ? 0 : size - pending.Where(p => p.Sha256 == sha256).Sum(p => p.ReceivedBytes);
        if (stored + adds > MaxStoreBytes)
            throw new ResourceExhaustedException(
                $"artifact '{name}' ({size} bytes) does not fit: the store holds {stored} of {MaxStoreBytes} bytes (Limits:MaxArtifactStoreBytes); remove some (refalign artifact rm).");
        Directory.CreateDirectory(_uploads);
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
            // An IOException here is the stream's fault too (a file 'a' and then 'a/b', a name the file system refuses):
            // not a transient one that a retry could fix.
            catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or IOException or UnauthorizedAccessException)
            {
                throw new InvalidArtifactException("chunk", $"artifact '{push.Name}' is not a tar stream of plain files: {e.Message.Replace(temp, push.Name, StringComparison.Ordinal)}", e);
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
        catch
        {
            // Whatever went wrong with a whole stream, pushing the same bytes again cannot help: its bytes go.
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

    /// <summary>Refuses <paramref name="more"/> bytes of a push when the store (objects and every push's bytes) would pass its quota.</summary>
    internal void ReserveChunk(string name, string sha256, long more)
    {
        // Content the store already holds costs nothing once the push ends: its bytes are not held against the quota.
        if (Directory.Exists(Path.Combine(_objects, sha256))) return;
        var stored = StoredBytes();
        if (stored + more > MaxStoreBytes)
            throw new ResourceExhaustedException(
                $"artifact '{name}' does not fit: the store holds {stored} of {MaxStoreBytes} bytes (Limits:MaxArtifactStoreBytes); remove some (refalign artifact rm). The bytes received so far are kept for {PendingExpiry.TotalHours:0.##} h.");
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
        store.ReserveChunk(push.Name, push.Sha256, data.Length);
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
