using System.Runtime.InteropServices;

namespace RefAlign.Compute.Files;

/// <summary>
/// What the file system says about a path, beyond what <see cref="FileInfo"/> tells on Unix: the canonical path with
/// every symlink resolved (<c>realpath</c>) and the file's type (<c>stat</c>), so a device, a FIFO or a socket is never
/// taken for a regular file.
/// </summary>
public static partial class UnixPaths
{
    public enum Kind { Missing, Regular, Directory, Other }

    const uint TypeMask = 0xF000, RegularType = 0x8000, DirectoryType = 0x4000;

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial IntPtr RealPath(string path, IntPtr resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(IntPtr pointer);

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Stat(string path, [Out] byte[] buffer);

    // Offset of st_mode in struct stat: x86-64 has st_nlink (8 bytes) before it, the generic layout (arm64) after it.
    static int ModeOffset => RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;

    /// <summary>The type of the file <paramref name="path"/> names, following symlinks.</summary>
    public static Kind KindOf(string path)
    {
        var buffer = new byte[256];
        if (Stat(path, buffer) != 0) return Kind.Missing;
        var mode = BitConverter.ToUInt32(buffer, ModeOffset) & TypeMask;
        return mode switch { RegularType => Kind.Regular, DirectoryType => Kind.Directory, _ => Kind.Other };
    }

    /// <summary>
    /// <paramref name="path"/> made absolute with every symlink resolved. A path that does not (yet) exist is resolved
    /// up to its deepest existing ancestor, the rest appended, so where it would land is known before it exists.
    /// </summary>
    public static string Canonical(string path)
    {
        var full = Path.GetFullPath(path);
        var rest = new Stack<string>();
        for (var at = full; ; )
        {
            var resolved = RealPath(at, IntPtr.Zero);
            if (resolved != IntPtr.Zero)
            {
                try { return Path.Combine([Marshal.PtrToStringUTF8(resolved)!, .. rest]); }
                finally { Free(resolved); }
            }
            var parent = Path.GetDirectoryName(at);
            if (parent is null) return full;
            rest.Push(Path.GetFileName(at));
            at = parent;
        }
    }

    /// <summary>
    /// The canonical path of the file <paramref name="handle"/> has open, as the kernel knows it (<c>/proc/self/fd</c>):
    /// what was really opened, whatever links or renames led there. Null where <c>/proc</c> is not mounted.
    /// </summary>
    public static string? OpenedPath(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        var link = new FileInfo($"/proc/self/fd/{handle.DangerousGetHandle()}");
        try { return link.LinkTarget; }
        catch (IOException) { return null; }
    }

    /// <summary>True when <paramref name="path"/> is <paramref name="root"/> or lies below it (both canonical).</summary>
    public static bool IsUnder(string path, string root)
    {
        var r = root.EndsWith('/') ? root : root + "/";
        return path == root || path.StartsWith(r, StringComparison.Ordinal);
    }
}
