using System.Globalization;
using System.Runtime.InteropServices;

namespace RefAlign.Runtime;

/// <summary>Total and used bytes of one device's memory (used: by every process on it, as nvidia-smi counts).</summary>
public sealed record DeviceMemoryFigures(long TotalBytes, long UsedBytes);

/// <summary>
/// A CUDA device's memory, read through the CUDA runtime that libtorch itself loaded: TorchSharp 0.107 has no memory
/// query (no <c>torch.cuda.mem_get_info</c>), and the runtime library's file name carries a build hash, so it is found
/// in this process's mapped files rather than by name. Null for the CPU, or where no CUDA runtime is loaded.
/// </summary>
public static unsafe class DeviceMemory
{
    static readonly Lock Sync = new();
    static nint s_runtime;
    static bool s_searched;

    /// <summary>The memory of <paramref name="device"/> (<c>cuda:N</c>), or null when it is not a loaded CUDA device.</summary>
    public static DeviceMemoryFigures? Of(string device)
    {
        if (!device.StartsWith("cuda:", StringComparison.Ordinal)
            || !int.TryParse(device.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var index)) return null;
        lock (Sync)
        {
            if (Runtime() is not (var lib and not 0)) return null;
            var getDevice = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(lib, "cudaGetDevice");
            var setDevice = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(lib, "cudaSetDevice");
            var memGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)NativeLibrary.GetExport(lib, "cudaMemGetInfo");
            int previous;
            if (getDevice(&previous) != 0 || setDevice(index) != 0) return null;
            try
            {
                nuint free, total;
                return memGetInfo(&free, &total) == 0 ? new DeviceMemoryFigures((long)total, (long)(total - free)) : null;
            }
            finally
            {
                // The calling thread's current device is CUDA state other code may rely on.
                setDevice(previous);
            }
        }
    }

    /// <summary>The handle of the CUDA runtime already mapped into this process, or 0.</summary>
    static nint Runtime()
    {
        if (s_searched) return s_runtime;
        s_searched = true;
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/self/maps")) return 0;
        var path = File.ReadLines("/proc/self/maps")
            .Select(line => line.IndexOf('/') is var at and >= 0 ? line[at..] : null)
            .FirstOrDefault(p => p is not null && Path.GetFileName(p).StartsWith("libcudart", StringComparison.Ordinal));
        if (path is null || !NativeLibrary.TryLoad(path, out var handle)) return 0;
        foreach (var name in new[] { "cudaGetDevice", "cudaSetDevice", "cudaMemGetInfo" })
            if (!NativeLibrary.TryGetExport(handle, name, out _)) return 0;
        return s_runtime = handle;
    }
}
