using System.Formats.Tar;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Threading.Channels;

namespace RefAlign.Artifacts;

/// <summary>
/// The wire and storage form of an artifact: one uncompressed POSIX (ustar) tar stream of its regular files, in ordinal
/// order of their relative paths, with no times, owners, modes or links, so the same files always give the same bytes
/// and the stream's SHA-256 can be the artifact's address. Shared by the client and the silo (the file is compiled into
/// both, as the .proto is), so the two sides cannot disagree on a byte. Hidden files (a name starting with '.', such as
/// a Hugging Face download's <c>.cache/</c>) are left out; symbolic links to files are followed (Hugging Face cache
/// snapshots are links into its blob store).
/// </summary>
internal static class ArtifactArchive
{
    public const int Block = 512;

    /// <summary>A file of an artifact: its path inside the artifact ('/'-separated) and where it is read from.</summary>
    public sealed record Entry(string Path, string Source, long Size);

    /// <summary>The files of <paramref name="source"/>, a folder or one file, in stream order.</summary>
    public static IReadOnlyList<Entry> Entries(string source)
    {
        if (File.Exists(source))
        {
            var name = System.IO.Path.GetFileName(source);
            CheckPath(name);
            return [new Entry(name, System.IO.Path.GetFullPath(source), new FileInfo(source).Length)];
        }
        if (!Directory.Exists(source)) throw new FileNotFoundException($"'{source}' is neither a file nor a folder.", source);
        var root = System.IO.Path.GetFullPath(source);
        var entries = new List<Entry>();
        void Walk(string folder, string prefix, int depth)
        {
            if (depth > 16) throw new InvalidDataException($"'{folder}' is nested more than 16 folders deep.");
            foreach (var path in Directory.EnumerateFileSystemEntries(folder))
            {
                var name = System.IO.Path.GetFileName(path);
                if (name.StartsWith('.')) continue;
                var relative = prefix + name;
                var info = new FileInfo(path);
                // A link to a folder is not followed (it could loop); a link to a file is read through.
                if (Directory.Exists(path))
                {
                    if (info.LinkTarget is null) Walk(path, relative + "/", depth + 1);
                    continue;
                }
                var target = info.LinkTarget is null ? info : (FileInfo?)info.ResolveLinkTarget(returnFinalTarget: true);
                if (target is null || !target.Exists) throw new FileNotFoundException($"'{path}' is a link to nothing.", path);
                CheckPath(relative);
                entries.Add(new Entry(relative, target.FullName, target.Length));
            }
        }
        Walk(root, "", 0);
        entries.Sort((a, b) => string.CompareOrdinal(a.Path, b.Path));
        if (entries.Count == 0) throw new InvalidDataException($"'{source}' holds no files.");
        return entries;
    }

    /// <summary>Bytes of the stream <see cref="Write"/> makes of <paramref name="entries"/>: a header and padded data each, two end blocks.</summary>
    public static long SizeOf(IEnumerable<Entry> entries) => entries.Sum(e => Block + Padded(e.Size)) + 2 * Block;

    static long Padded(long size) => (size + Block - 1) / Block * Block;

    /// <summary>Writes the tar stream of <paramref name="entries"/> to <paramref name="output"/> (left open).</summary>
    public static void Write(IReadOnlyList<Entry> entries, Stream output)
    {
        using var tar = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true);
        foreach (var e in entries)
        {
            using var data = new FileStream(e.Source, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            // A file that changed since it was listed would make the stream disagree with its announced size and hash.
            if (data.Length != e.Size) throw new IOException($"'{e.Source}' changed while it was being sent ({e.Size} → {data.Length} bytes).");
            tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, e.Path)
            {
                DataStream = data,
                ModificationTime = DateTimeOffset.UnixEpoch,
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                Uid = 0, Gid = 0, UserName = "", GroupName = "",
            });
        }
    }

    /// <summary>
    /// The tar stream of <paramref name="entries"/> to read from, made by a background writer at most a few blocks
    /// ahead of the reader (so a multi-gigabyte model is never held in memory); disposing it stops the writer.
    /// </summary>
    public static Stream OpenRead(IReadOnlyList<Entry> entries) => new Producer(entries);

    /// <summary>
    /// Reads <paramref name="tar"/> in pieces of <paramref name="buffer"/>'s length and yields each from
    /// <paramref name="offset"/> on (the piece across it cut there), with its offset in the stream: how a push or a pull
    /// resumes. <paramref name="read"/> sees every byte, skipped ones too (a hash of the whole). A piece lives in
    /// <paramref name="buffer"/>: use it before asking for the next.
    /// </summary>
    public static async IAsyncEnumerable<(long Offset, ReadOnlyMemory<byte> Data)> ChunksFrom(Stream tar, long offset, byte[] buffer,
        Action<ReadOnlyMemory<byte>>? read = null, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        long position = 0;
        for (int n; (n = await tar.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellation)) > 0;)
        {
            read?.Invoke(buffer.AsMemory(0, n));
            var start = position;
            position += n;
            if (position <= offset) continue;
            var skip = (int)Math.Max(0, offset - start);
            yield return (start + skip, buffer.AsMemory(skip, n - skip));
        }
    }

    sealed class Producer : Stream
    {
        const int BlockBytes = 1 << 20;
        readonly Channel<byte[]> _blocks = Channel.CreateBounded<byte[]>(4);
        readonly CancellationTokenSource _stop = new();
        readonly Task _writer;
        byte[] _current = [];
        int _used;

        public Producer(IReadOnlyList<Entry> entries) =>
            _writer = Task.Run(() =>
            {
                try
                {
                    using (var sink = new Sink(_blocks.Writer, _stop.Token)) ArtifactArchive.Write(entries, sink);
                    _blocks.Writer.TryComplete();
                }
                catch (Exception e) { _blocks.Writer.TryComplete(e); }
            });

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (_used == _current.Length)
            {
                if (!await _blocks.Reader.WaitToReadAsync(cancellationToken)) return 0;
                if (_blocks.Reader.TryRead(out var next)) (_current, _used) = (next, 0);
            }
            var n = Math.Min(buffer.Length, _current.Length - _used);
            _current.AsMemory(_used, n).CopyTo(buffer);
            _used += n;
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _stop.Cancel();
                try { _writer.Wait(); } catch (AggregateException) { }
                _stop.Dispose();
            }
            base.Dispose(disposing);
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        /// <summary>The writer's side: fills blocks and hands each to the reader, waiting while the reader is behind.</summary>
        sealed class Sink(ChannelWriter<byte[]> blocks, CancellationToken stop) : Stream
        {
            byte[] _block = new byte[BlockBytes];
            int _filled;

            public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

            public override void Write(ReadOnlySpan<byte> data)
            {
                while (data.Length > 0)
                {
                    var n = Math.Min(data.Length, BlockBytes - _filled);
                    data[..n].CopyTo(_block.AsSpan(_filled));
                    _filled += n;
                    data = data[n..];
                    if (_filled == BlockBytes) Hand();
                }
            }

            void Hand()
            {
                blocks.WriteAsync(_filled == BlockBytes ? _block : _block[.._filled], stop).AsTask().GetAwaiter().GetResult();
                (_block, _filled) = (new byte[BlockBytes], 0);
            }

            protected override void Dispose(bool disposing)
            {
                if (disposing && _filled > 0 && !stop.IsCancellationRequested) Hand();
                base.Dispose(disposing);
            }

            public override bool CanRead => false;
            public override bool CanSeek => false;
            public override bool CanWrite => true;
            public override long Length => throw new NotSupportedException();
            public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
            public override void Flush() { }
            public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
        }
    }

    /// <summary>A file <see cref="Extract"/> wrote: path in the artifact, size, SHA-256 (lower-case hex).</summary>
    public sealed record Extracted(string Path, long Size, string Sha256);

    /// <summary>
    /// Unpacks a tar stream into <paramref name="folder"/> (created), refusing anything but regular files and folders
    /// with safe relative names; returns the files with their hashes, in stream order.
    /// </summary>
    public static IReadOnlyList<Extracted> Extract(Stream tar, string folder)
    {
        Directory.CreateDirectory(folder);
        var root = System.IO.Path.GetFullPath(folder);
        var files = new List<Extracted>();
        using var reader = new TarReader(tar, leaveOpen: true);
        while (reader.GetNextEntry() is { } entry)
        {
            if (entry.EntryType == TarEntryType.Directory) continue;
            if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile))
                throw new InvalidDataException($"'{entry.Name}' is a {entry.EntryType} entry; an artifact holds regular files only.");
            CheckPath(entry.Name);
            var target = System.IO.Path.GetFullPath(System.IO.Path.Combine(root, entry.Name));
            if (!target.StartsWith(root + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new InvalidDataException($"'{entry.Name}' leads outside the artifact.");
            if (File.Exists(target)) throw new InvalidDataException($"'{entry.Name}' appears twice.");
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
            using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write);
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[1 << 16];
            long size = 0;
            if (entry.DataStream is { } data)
            {
                for (int n; (n = data.Read(buffer)) > 0; size += n)
                {
                    sha.AppendData(buffer, 0, n);
                    output.Write(buffer, 0, n);
                }
            }
            files.Add(new Extracted(entry.Name, size, Convert.ToHexStringLower(sha.GetHashAndReset())));
        }
        return files;
    }

    /// <summary>A relative '/'-path of plain segments: no '..', '.', empty or hidden segment, no backslash, no control character.</summary>
    public static void CheckPath(string path)
    {
        if (path.Length is 0 or > 255 || path.StartsWith('/') || path.Contains('\\') || path.Any(char.IsControl))
            throw new InvalidDataException($"'{path}' is not a safe relative file name for an artifact.");
        foreach (var segment in path.Split('/'))
            if (segment.Length == 0 || segment.StartsWith('.'))
                throw new InvalidDataException($"'{path}' is not a safe relative file name for an artifact (segment '{segment}').");
    }
}
