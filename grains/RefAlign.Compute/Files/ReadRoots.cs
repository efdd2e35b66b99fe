using Microsoft.Win32.SafeHandles;

namespace RefAlign.Compute.Files;

/// <summary>
/// The folders a silo reads models, encoders, data and artifacts from (its data, output, checkpoint and artifact roots),
/// checked where a file is opened rather than where a folder was listed: the path of the file actually opened, read back
/// from its open descriptor with every link resolved, must lie under a root. So a link at any depth, a linked folder, a
/// shard an index names, or a link swapped in after a run was admitted cannot lead a read out of the roots. A process
/// with no roots (<c>refalign</c> on a workstation) reads whatever its user points it at.
/// </summary>
/// <remarks>
/// Hard links cannot be seen from a path (a hard link is the file itself): roots must live on file systems only the
/// operator writes (docs/security.md).
/// </remarks>
public sealed class ReadRoots
{
    static readonly Lock Gate = new();
    static readonly AsyncLocal<ReadRoots?> Narrowed = new();
    readonly string[] _roots;
    readonly ReadRoots? _outer;

    public ReadRoots(IEnumerable<string> roots) : this(roots, null)
    {
    }

    ReadRoots(IEnumerable<string> roots, ReadRoots? outer)
    {
        _roots = [.. roots.Select(UnixPaths.Canonical).Distinct(StringComparer.Ordinal)];
        _outer = outer;
    }

    /// <summary>The roots of this process: none until a silo host confines it (<see cref="ConfineProcess"/>).</summary>
    public static ReadRoots Process { get; private set; } = new([]);

    /// <summary>What the readers of model, encoder and data files check against: the process's roots, narrowed by <see cref="Narrow"/>.</summary>
    public static ReadRoots Current => Narrowed.Value ?? Process;

    /// <summary>
    /// Adds <paramref name="roots"/> to the process's. Adding, not replacing: a process that hosts several silos (tests do)
    /// reads under any of theirs, and one that confined itself never goes back to reading anywhere.
    /// </summary>
    public static void ConfineProcess(IEnumerable<string> roots)
    {
        lock (Gate) Process = new ReadRoots(Process._roots.Concat(roots));
    }

    /// <summary>
    /// Until disposed, reads in this flow of execution must lie under <paramref name="roots"/> as well as under the
    /// process's: a scope only ever narrows what may be read.
    /// </summary>
    public static IDisposable Narrow(IEnumerable<string> roots)
    {
        var previous = Narrowed.Value;
        Narrowed.Value = new ReadRoots(roots, previous ?? Process);
        return new Restore(() => Narrowed.Value = previous);
    }

    sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    public IReadOnlyList<string> Roots => _roots;

    /// <summary>False when nothing confines reads (a process with no roots): every path is allowed.</summary>
    public bool Confines => _roots.Length > 0 || _outer?.Confines == true;

    /// <summary>True when the canonical <paramref name="path"/> lies under a root, of this scope and of every outer one.</summary>
    public bool Contains(string path) =>
        (_roots.Length == 0 || _roots.Any(r => UnixPaths.IsUnder(path, r))) && (_outer?.Contains(path) ?? true);

    /// <summary>
    /// Opens <paramref name="path"/> for reading, then checks what was opened: a regular file under a root. The check is
    /// on the descriptor, so nothing can be swapped in between the check and the read.
    /// </summary>
    public SafeFileHandle OpenHandle(string path, FileOptions options = FileOptions.None)
    {
        // A FIFO or a device would block or never end: refused before it is opened.
        if (Confines && UnixPaths.KindOf(path) is UnixPaths.Kind.Other)
            throw NotRegular(path);
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, options);
        if (!Confines) return handle;
        try
        {
            var opened = UnixPaths.OpenedPath(handle) ?? UnixPaths.Canonical(path);
            if (!Contains(opened)) throw Outside(path);
            if (UnixPaths.KindOf(opened) is not UnixPaths.Kind.Regular) throw NotRegular(path);
            return handle;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary><see cref="OpenHandle"/> as a stream.</summary>
    public FileStream OpenRead(string path, FileOptions options = FileOptions.None) => new(OpenHandle(path, options), FileAccess.Read, 1 << 16);

    public byte[] ReadAllBytes(string path)
    {
        using var stream = OpenRead(path);
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    public string ReadAllText(string path)
    {
        using var reader = new StreamReader(OpenRead(path), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        return reader.ReadToEnd();
    }

    /// <summary>
    /// Every entry under <paramref name="folder"/>, at any depth, resolves inside the roots and is a regular file or a
    /// folder: for readers that open files through a library of their own (the tokenizers), checked right before they
    /// load. At most <paramref name="maxEntries"/> entries are looked at; more is refused, not walked.
    /// </summary>
    public void CheckFolder(string folder, int maxEntries = 100_000)
    {
        if (!Confines) return;
        if (!Contains(UnixPaths.Canonical(folder))) throw Outside(folder);
        var seen = 0;
        // A linked folder inside the roots is walked too (what it holds may link elsewhere); each real folder once, so a
        // link cycle ends.
        var pending = new Queue<string>([folder]);
        var visited = new HashSet<string>([UnixPaths.Canonical(folder)], StringComparer.Ordinal);
        while (pending.TryDequeue(out var dir))
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(dir))
            {
                if (++seen > maxEntries)
                    throw new OutsideRootsException(folder, false, $"{folder}: holds more than {maxEntries} entries; a model folder holds a few dozen.");
                var target = UnixPaths.Canonical(entry);
                if (!Contains(target)) throw Outside(entry);
                var kind = UnixPaths.KindOf(target);
                if (kind is not (UnixPaths.Kind.Regular or UnixPaths.Kind.Directory)) throw NotRegular(entry);
                if (kind == UnixPaths.Kind.Directory && visited.Add(target)) pending.Enqueue(entry);
            }
        }
    }

    static OutsideRootsException Outside(string path) =>
        new(path, true, $"{path}: resolves outside the silo's read roots (Silo:DataRoots, Silo:OutputRoot, Silo:CheckpointRoot); links in a model, encoder or data folder must stay inside them.");

    static OutsideRootsException NotRegular(string path) =>
        new(path, false, $"{path}: is not a regular file; a model, encoder or data folder holds regular files only.");
}

/// <summary>
/// A file a silo was asked to read that resolves outside its roots (<see cref="Outside"/>), or is not a regular file.
/// Not an <see cref="IOException"/>: retrying cannot help, so no caller may take it for a transient fault.
/// </summary>
public sealed class OutsideRootsException(string path, bool outside, string message) : Exception(message)
{
    /// <summary>The path as it was given (not where it leads).</summary>
    public string Path { get; } = path;

    public bool Outside { get; } = outside;
}
