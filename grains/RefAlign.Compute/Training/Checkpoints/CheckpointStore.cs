using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace RefAlign.Compute.Training.Checkpoints;

/// <summary>
/// Checkpoint folders <c>&lt;root&gt;/step-000123</c> written atomically, a <c>latest</c> pointer file, and pruning
/// to the newest <c>keepLast</c>. Protocol of <see cref="Save"/>: contents into <c>&lt;root&gt;/.tmp-step-000123-&lt;guid&gt;</c>,
/// every file there fsync'd, <c>manifest.json</c> written last and fsync'd, the folder renamed to its final name, then
/// <c>latest</c> replaced via temp file + rename, then old checkpoints removed. A folder named <c>step-*</c> therefore
/// always holds a complete checkpoint, and an exception at any point leaves the previous latest checkpoint in place.
/// One writer per root is assumed: construction deletes every <c>.tmp-*</c> entry, i.e. leftovers of crashed saves.
/// </summary>
public sealed partial class CheckpointStore
{
    public const string LatestFileName = "latest";
    const string TempPrefix = ".tmp-";

    readonly string _root;
    readonly int _keepLast;

    public CheckpointStore(string root, int keepLast = 3)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(root);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(keepLast);
        _root = Path.GetFullPath(root);
        _keepLast = keepLast;
        Directory.CreateDirectory(_root);
        CleanTemporaries();
    }

    /// <summary>A view that only reads (no folder created, no leftovers removed): another writer may own the root.</summary>
    CheckpointStore(string root)
    {
        _root = Path.GetFullPath(root);
        _keepLast = 1;
    }

    /// <summary>The latest complete checkpoint under <paramref name="root"/> (as <see cref="Latest"/>), read without touching the store.</summary>
    public static (CheckpointManifest Manifest, string Folder)? LatestIn(string root) =>
        Directory.Exists(root) ? new CheckpointStore(root).Latest() : null;

    public string Root => _root;

    /// <summary>
    /// Called with the temporary folder after the manifest is durable and before it is renamed into place (fault
    /// injection in tests, instrumentation); an exception thrown here aborts the save like any other.
    /// </summary>
    public Action<string>? BeforeCommit { get; set; }

    /// <summary>Checked before anything is written and again before the checkpoint is renamed into place.</summary>
    public EpochFence? Fence { get; init; }

    public static string FolderName(int step) => string.Create(CultureInfo.InvariantCulture, $"step-{step:D6}");

    /// <summary>
    /// Writes a checkpoint for <paramref name="manifest"/>.Step; <paramref name="writeContents"/> receives the
    /// temporary folder and writes everything but <c>manifest.json</c>. A checkpoint of the same step is replaced.
    /// Returns the final folder. The checkpoint just written is never pruned, even when older-numbered.
    /// </summary>
    public string Save(CheckpointManifest manifest, Action<string> writeContents)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(writeContents);
        var json = manifest.ToJson();
        var name = FolderName(manifest.Step);
        var final = Path.Combine(_root, name);
        var temp = Path.Combine(_root, $"{TempPrefix}{name}-{Guid.NewGuid():N}");
        Fence?.Check();
        Directory.CreateDirectory(temp);
        try
        {
            writeContents(temp);
            var manifestPath = Path.Combine(temp, CheckpointManifest.FileName);
            if (File.Exists(manifestPath))
                throw new InvalidOperationException($"{manifestPath}: the contents writer must not write {CheckpointManifest.FileName}; the store writes it last.");
            FsyncTree(temp);
            WriteDurably(manifestPath, json);
            BeforeCommit?.Invoke(temp);
            Fence?.Check();
            if (Directory.Exists(final))
            {
                // Same step saved again (e.g. after resuming from an earlier one): park the old one, then swap.
                var parked = Path.Combine(_root, $"{TempPrefix}replaced-{name}-{Guid.NewGuid():N}");
                Directory.Move(final, parked);
                Directory.Move(temp, final);
                TryDeleteDirectory(parked);
            }
            else
            {
                Directory.Move(temp, final);
            }
        }
        catch
        {
            TryDeleteDirectory(temp);
            throw;
        }
        WriteLatestPointer(name);
        Prune(manifest.Step);
        return final;
    }

    /// <summary>
    /// The checkpoint the <c>latest</c> pointer names when it is complete, else the highest-step complete one; null when
    /// there is none. Folders without a manifest are never returned; a malformed manifest throws
    /// <see cref="ModelFormatException"/> (it cannot come from this store, so it is not silently skipped).
    /// </summary>
    public (CheckpointManifest Manifest, string Folder)? Latest()
    {
        var pointer = Path.Combine(_root, LatestFileName);
        if (File.Exists(pointer))
        {
            var named = File.ReadAllText(pointer, Encoding.UTF8).Trim();
            var m = StepFolder().Match(named);
            if (m.Success && TryRead(Path.Combine(_root, named), ParseStep(m)) is { } pointed)
                return pointed;
        }
        foreach (var (step, folder) in Folders().OrderByDescending(f => f.Step))
        {
            if (TryRead(folder, step) is { } found)
                return found;
        }
        return null;
    }

    /// <summary>Steps of the complete checkpoints (those with a manifest), ascending.</summary>
    public IReadOnlyList<int> Steps() =>
        [.. Folders().Where(f => File.Exists(Path.Combine(f.Folder, CheckpointManifest.FileName))).Select(f => f.Step).Order()];

    /// <summary>Reads and validates the manifest of <paramref name="folder"/>; null when it has none.</summary>
    public static CheckpointManifest? ReadManifest(string folder)
    {
        var path = Path.Combine(folder, CheckpointManifest.FileName);
        return File.Exists(path) ? CheckpointManifest.Parse(File.ReadAllBytes(path), path) : null;
    }

    static (CheckpointManifest, string)? TryRead(string folder, int step)
    {
        if (!Directory.Exists(folder)) return null;
        var manifest = ReadManifest(folder);
        if (manifest is null) return null;
        if (manifest.Step != step)
            throw new ModelFormatException(
                $"{Path.Combine(folder, CheckpointManifest.FileName)}: field 'step' is {manifest.Step} but the folder is named for step {step}.");
        return (manifest, folder);
    }

    List<(int Step, string Folder)> Folders()
    {
        var result = new List<(int, string)>();
        foreach (var dir in Directory.EnumerateDirectories(_root))
        {
            var m = StepFolder().Match(Path.GetFileName(dir));
            if (m.Success) result.Add((ParseStep(m), dir));
        }
        return result;
    }

    void Prune(int justSaved)
    {
        var complete = Folders()
            .Where(f => f.Step != justSaved && File.Exists(Path.Combine(f.Folder, CheckpointManifest.FileName)))
            .OrderByDescending(f => f.Step)
            .Skip(_keepLast - 1);
        foreach (var (_, folder) in complete)
        {
            // Renamed first so that a crash mid-delete leaves a temporary (cleaned later), not a broken checkpoint.
            var doomed = Path.Combine(_root, $"{TempPrefix}delete-{Path.GetFileName(folder)}-{Guid.NewGuid():N}");
            Directory.Move(folder, doomed);
            TryDeleteDirectory(doomed);
        }
    }

    void WriteLatestPointer(string name)
    {
        var pointer = Path.Combine(_root, LatestFileName);
        var temp = Path.Combine(_root, $"{TempPrefix}{LatestFileName}-{Guid.NewGuid():N}");
        try
        {
            WriteDurably(temp, Encoding.UTF8.GetBytes(name + "\n"));
            File.Move(temp, pointer, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    void CleanTemporaries()
    {
        foreach (var entry in Directory.EnumerateFileSystemEntries(_root, TempPrefix + "*"))
        {
            if (Directory.Exists(entry)) TryDeleteDirectory(entry);
            else File.Delete(entry);
        }
    }

    static void WriteDurably(string path, byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    static void FsyncTree(string folder)
    {
        foreach (var file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            stream.Flush(flushToDisk: true);
        }
    }

    static void TryDeleteDirectory(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover temporary is harmless: it never looks like a checkpoint and the next store removes it.
        }
    }

    static int ParseStep(Match m) => int.Parse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"\Astep-(\d{6,9})\z")]
    private static partial Regex StepFolder();
}
