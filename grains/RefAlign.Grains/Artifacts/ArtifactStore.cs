using System.Text.Json;
using System.Text.RegularExpressions;
using RefAlign.Artifacts;
using RefAlign.Compute.Training;

namespace RefAlign.Grains.Artifacts;

/// <summary>
/// The cluster's artifacts, as files under <c>&lt;Silo:OutputRoot&gt;/artifacts</c> (shared by the silos that run the
/// work, as checkpoints are): <c>objects/&lt;sha256&gt;/</c> holds an artifact's unpacked files, addressed by the SHA-256 of
/// its tar stream (<see cref="ArtifactArchive"/>), so the same content is stored once; <c>names/&lt;name&gt;.json</c> binds
/// a name to an object; <c>uploads/</c> holds pushes in progress (listed apart, removable by name, gone after
/// <see cref="PendingExpiry"/> without a byte). Every step that makes something visible is a rename, so a push that dies
/// half way leaves nothing half there. The store's quota counts stored objects and the bytes pushes in progress have
/// received, not what their headers announce: a header costs nothing, so headers alone cannot use the quota up.
/// </summary>
public sealed partial class ArtifactStore
{
    public static readonly IReadOnlyList<string> Kinds = ["model", "encoder", "data", "checkpoint", "report"];

    readonly string _objects, _names, _uploads;

    public ArtifactStore(string root, long maxArtifactBytes, long maxStoreBytes, int maxPendingPushes = 64, TimeSpan? pendingExpiry = null)
    {
        Root = Path.GetFullPath(root);
        (_objects, _names, _uploads) = (Path.Combine(Root, "objects"), Path.Combine(Root, "names"), Path.Combine(Root, "uploads"));
        MaxArtifactBytes = maxArtifactBytes;
        MaxStoreBytes = maxStoreBytes;
        MaxPendingPushes = maxPendingPushes;
        PendingExpiry = pendingExpiry ?? TimeSpan.FromDays(1);
    }

    public string Root { get; }

    public long MaxArtifactBytes { get; }

    public long MaxStoreBytes { get; }

    /// <summary>Pushes in progress at once (<c>Limits:MaxPendingPushes</c>): each holds a partial copy until it ends or expires.</summary>
    public int MaxPendingPushes { get; }

    /// <summary>A push that received no byte for this long is removed (<c>Limits:PendingPushExpirySeconds</c>).</summary>
    public TimeSpan PendingExpiry { get; }

    /// <summary>Where the stored objects live: runs read artifacts there, so admission treats it as a read root.</summary>
    public string ObjectsRoot => _objects;

    /// <summary>One to four segments of [A-Za-z0-9._-], none starting with '.', joined by '/'; at most 200 characters.</summary>
    public static void CheckName(string name)
    {
        if (!NamePattern().IsMatch(name) || name.Length > 200)
            throw new InvalidArtifactException("name",
                $"field 'name' is {(name.Any(char.IsControl) ? JsonSerializer.Serialize(name) : $"'{name}'")}; an artifact name is 1 to 4 segments of letters, digits, '.', '_' or '-' joined by '/', none starting with '.' (e.g. datasets/hh-small).");
    }

    // \z, not $: in .NET '$' also matches before a final newline, which would let "name\n" through.
    [GeneratedRegex(@"\A[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*){0,3}\z")]
    private static partial Regex NamePattern();

    public static void CheckKind(string kind)
    {
        if (!Kinds.Contains(kind)) throw new InvalidArtifactException("kind", $"field 'kind' is '{kind}'; name one of {string.Join(", ", Kinds)}.");
    }

    static void CheckSha(string sha, string field)
    {
        if (sha.Length != 64 || !sha.All(char.IsAsciiHexDigitLower))
            throw new InvalidArtifactException(field, $"field '{field}' must be a SHA-256 in lower-case hex (64 characters).");
    }

    string NameFile(string name) => Path.Combine(_names, name + ".json");

    /// <summary>The artifact named <paramref name="name"/>, or null.</summary>
    public ArtifactRecord? Find(string name)
    {
        CheckName(name);
        var file = NameFile(name);
        return File.Exists(file) ? JsonSerializer.Deserialize<ArtifactRecord>(File.ReadAllText(file), ArtifactRecord.Json) : null;
    }

    public ArtifactRecord Get(string name) => Find(name) ?? throw new ArtifactNotFoundException(name);

    /// <summary>Every named artifact whose name starts with <paramref name="prefix"/>, by name.</summary>
    public IReadOnlyList<ArtifactRecord> List(string prefix = "")
    {
        if (!Directory.Exists(_names)) return [];
        return [.. Directory.EnumerateFiles(_names, "*.json", SearchOption.AllDirectories)
            .Select(f => JsonSerializer.Deserialize<ArtifactRecord>(File.ReadAllText(f), ArtifactRecord.Json)!)
            .Where(a => a.Name.StartsWith(prefix, StringComparison.Ordinal))
            .OrderBy(a => a.Name, StringComparer.Ordinal)];
    }

    /// <summary>Bytes of stored objects (each once) and of what pushes in progress have received.</summary>
    public long StoredBytes() => ObjectBytes() + Pending().Sum(p => p.ReceivedBytes);

    long ObjectBytes() => List().DistinctBy(a => a.Sha256).Sum(a => a.Size);

    /// <summary>The path a run reads for <paramref name="record"/>: the object folder, or the one file of a data artifact.</summary>
    public string PathOf(ArtifactRecord record)
    {
        var folder = Path.Combine(_objects, record.Sha256);
        return record.Kind == "data" ? Path.Combine(folder, record.Files[0].Path) : folder;
    }

    /// <summary>
    /// The path of artifact <paramref name="name"/> for a run config field that needs <paramref name="use"/>; errors
    /// name the field.
    /// </summary>
    public string Resolve(string name, string field, ArtifactUse use)
    {
        try { CheckName(name); }
        catch (InvalidArtifactException e) { throw new InvalidRunConfigException(field, $"field '{field}': {e.Message}"); }
        var record = Find(name) ?? throw new InvalidRunConfigException(field,
            $"field '{field}' names artifact '{name}', which the cluster does not hold (refalign artifact list shows what it does).");
        var wanted = use switch { ArtifactUse.Model => "model", ArtifactUse.Encoder => "encoder", _ => "data" };
        // A checkpoint artifact is a model too (ModelReferences turns it into its HF folder).
        if (record.Kind != wanted && !(use == ArtifactUse.Model && record.Kind == "checkpoint"))
            throw new InvalidRunConfigException(field, $"field '{field}' names artifact '{name}', which is a {record.Kind}; it needs a {wanted}.");
        return PathOf(record);
    }

    /// <summary>
    /// Removes the name; the object goes too when no other name uses it and <paramref name="inUse"/> (paths running runs
    /// read) does not mention it. Pushes in progress under the name are removed as well. Returns what was removed (for a
    /// name only pending, the push, without files).
    /// </summary>
    public ArtifactRecord Delete(string name, Func<string, bool> inUse)
    {
        CheckName(name);
        var pending = Pending().Where(p => p.Name == name).ToList();
        foreach (var p in pending) Discard(p.Sha256);
        if (Find(name) is not { } record)
            return pending.Count > 0 ? new ArtifactRecord(name, pending[0].Kind, pending[0].Size, pending[0].Sha256, [], pending[0].Updated)
                : throw new ArtifactNotFoundException(name);
        File.Delete(NameFile(name));
        var folder = Path.Combine(_objects, record.Sha256);
        if (List().All(a => a.Sha256 != record.Sha256) && !inUse(folder) && Directory.Exists(folder))
        {
            // Renamed first, so a reader never sees a half-deleted object.
            var doomed = Path.Combine(_objects, $".deleted-{record.Sha256}-{Guid.NewGuid():N}");
            Directory.Move(folder, doomed);
            Directory.Delete(doomed, recursive: true);
        }
        return record;
    }

    internal IReadOnlyList<ArtifactArchive.Entry> ObjectEntries(ArtifactRecord record)
    {
        var folder = Path.Combine(_objects, record.Sha256);
        return [.. record.Files.Select(f => new ArtifactArchive.Entry(f.Path, Path.Combine(folder, f.Path), f.Size))];
    }
}

/// <summary>A named artifact, as <c>names/&lt;name&gt;.json</c> keeps it.</summary>
public sealed record ArtifactRecord(string Name, string Kind, long Size, string Sha256, IReadOnlyList<ArtifactFileRecord> Files, DateTimeOffset Created)
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };
}

public sealed record ArtifactFileRecord(string Path, long Size, string Sha256);

/// <summary>A push in progress: what its header announced.</summary>
public sealed record PendingPush(string Name, string Kind, long Size, string Sha256);

/// <summary>A push in progress as the store lists it: received so far, last written, and when it expires.</summary>
public sealed record PendingUpload(string Name, string Kind, long Size, string Sha256, long ReceivedBytes, DateTimeOffset Updated, DateTimeOffset Expires);

/// <summary>A bad artifact request (name, kind, chunk, content); <see cref="Field"/> is the request field it is about.</summary>
public sealed class InvalidArtifactException(string field, string message, Exception? inner = null) : Exception(message, inner)
{
    public string Field { get; } = field;
}

public sealed class ArtifactNotFoundException(string name) : Exception($"artifact '{name}' does not exist (refalign artifact list shows what does).");

/// <summary>A chunk or the whole stream whose bytes do not hash to what the client sent.</summary>
public sealed class ArtifactDataLossException(string message) : Exception(message);

/// <summary>A push that does not start where the silo's partial copy ends.</summary>
public sealed class PushOffsetMismatchException(long received, long offered)
    : Exception($"the silo holds {received} bytes of this push, but it was offered from byte {offered}; resume from {received}.")
{
    public long Received { get; } = received;
}
