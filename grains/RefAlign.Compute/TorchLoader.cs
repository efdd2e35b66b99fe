using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace RefAlign.Compute;

/// <summary>The libtorch this process loaded from a folder: the folder, <c>cpu</c> or <c>cuda</c>, and the shim's file.</summary>
public sealed record LoadedLibTorch(string Folder, string Backend, string Shim);

/// <summary>
/// Loads libtorch from a folder an operator names (a PyTorch install's <c>lib/</c>, an unpacked libtorch) instead of the
/// natives a NuGet package put beside the program: the way to drive a CUDA libtorch that no NuGet feed here serves
/// (docs/gpu.md). The libraries are opened by path before TorchSharp's first call; its P/Invokes are answered with
/// those handles, and its own lookups by name find them by soname, so no second copy is mapped. The shim is bound
/// eagerly (RTLD_NOW) and checked for every entry point TorchSharp declares: a shim built
/// for another libtorch fails here with the symbol's name, not later with a crash in the middle of a step.
/// </summary>
public static class TorchLoader
{
    /// <summary>The environment variable every process of ours reads (the silo as configuration key <c>LIBTORCH</c>).</summary>
    public const string EnvironmentVariable = "REFALIGN_LIBTORCH";

    public const string ShimFile = "libLibTorchSharp.so";
    const int RtldLazy = 0x1, RtldNow = 0x2;
    static readonly Lock Sync = new();
    static LoadedLibTorch? s_loaded;

    /// <summary>What <see cref="Load"/> loaded; null while the process uses the libtorch beside the program.</summary>
    public static LoadedLibTorch? Loaded => s_loaded;

    /// <summary>
    /// Loads <c>libtorch_cpu.so</c>, <c>libtorch_cuda.so</c> (when the folder has it) and <c>libtorch.so</c> from
    /// <paramref name="folder"/>, then <c>libLibTorchSharp.so</c> (the program's own, or the folder's when the program has
    /// none), then lets TorchSharp initialise (CUDA too, for a CUDA libtorch). Every failure is a
    /// <see cref="LibTorchLoadException"/> whose one-line message names <paramref name="setting"/>, the file and, for an
    /// unresolved symbol, the symbol. Loading the same folder again is a no-op.
    /// </summary>
    public static LoadedLibTorch Load(string folder, string setting)
    {
        lock (Sync)
        {
            var full = Path.GetFullPath(folder);
            if (s_loaded is { } done)
                return done.Folder == full ? done : throw new LibTorchLoadException(setting, full, $"libtorch is already loaded from '{done.Folder}'.");
            if (!OperatingSystem.IsLinux())
                throw new LibTorchLoadException(setting, full, "loading libtorch from a folder is supported on Linux only.");
            if (!Directory.Exists(full))
                throw new LibTorchLoadException(setting, full, $"folder '{full}' does not exist.");
            var cpu = Path.Combine(full, "libtorch_cpu.so");
            if (!File.Exists(cpu))
                throw new LibTorchLoadException(setting, cpu,
                    $"'{full}' holds no libtorch_cpu.so (a libtorch lib folder has libtorch_cpu.so, libc10.so and, for CUDA, libtorch_cuda.so).");
            // TorchSharp binds its native backend once per process: a folder named after that would be ignored silently.
            if (MappedFiles(ShimFile).FirstOrDefault() is { } early)
                throw new LibTorchLoadException(setting, early, $"TorchSharp already loaded '{early}' before {setting} took effect.");

            var cpuHandle = Open(setting, cpu, RtldLazy);
            var cudaPath = Path.Combine(full, "libtorch_cuda.so");
            var cudaHandle = File.Exists(cudaPath) ? Open(setting, cudaPath, RtldLazy) : 0;
            if (Path.Combine(full, "libtorch.so") is var umbrella && File.Exists(umbrella)) Open(setting, umbrella, RtldLazy);

            var shim = ShimCandidates(full).FirstOrDefault(File.Exists)
                ?? throw new LibTorchLoadException(setting, Path.Combine(full, ShimFile),
                    $"no {ShimFile} beside the program ('{AppContext.BaseDirectory}') nor in '{full}'.");
            // Eager binding: every libtorch symbol the shim needs is resolved now, and a missing one is named.
            var shimHandle = Open(setting, shim, RtldNow);
            var missing = EntryPoints().Where(e => !NativeLibrary.TryGetExport(shimHandle, e, out _)).ToList();
            if (missing.Count > 0)
                throw new LibTorchLoadException(setting, shim,
                    $"'{shim}' lacks the symbol {missing[0]}{(missing.Count > 1 ? $" (and {missing.Count - 1} more)" : "")} that TorchSharp calls: it is not TorchSharp {TorchSharpVersion}'s native shim.");

            // Checked last, so that a folder's own faults are reported by any build.
            if (OwnLibTorch() is { } own)
                throw new LibTorchLoadException(setting, own,
                    $"this program carries its own libtorch ('{own}'), which TorchSharp would map beside the folder's; use a build without one " +
                    "(the GPU bundle, tests/gpu/make-bundle.sh, or -p:TorchBackend=external; docs/gpu.md).");
            NativeLibrary.SetDllImportResolver(typeof(torch).Assembly, (name, _, _) => name switch
            {
                "LibTorchSharp" => shimHandle,
                "torch_cpu" => cpuHandle,
                "torch_cuda" => cudaHandle,
                _ => 0,
            });
            InitializeTorchSharp(setting, shim);
            return s_loaded = new LoadedLibTorch(full, cudaHandle != 0 ? "cuda" : "cpu", shim);
        }
    }

    /// <summary>
    /// TorchSharp's static constructor binds its native backend, looking libraries up by name (that lookup ignores the
    /// resolver above): with no libtorch beside the program the names resolve to the libraries loaded here, by their
    /// sonames, and the shim to the program's own file, which is why that one is preferred. Run now, so a failure is
    /// reported as this setting's; two copies of a library mapped all the same are refused.
    /// </summary>
    static void InitializeTorchSharp(string setting, string shim)
    {
        try { RuntimeHelpers.RunClassConstructor(typeof(torch).TypeHandle); }
        catch (TypeInitializationException e)
        {
            throw new LibTorchLoadException(setting, shim,
                $"TorchSharp did not initialise with '{shim}': {(e.InnerException ?? e).Message.Split('\n')[0].Trim()}");
        }
        foreach (var name in (string[])["libtorch_cpu.so", ShimFile])
            if (MappedFiles(name).Distinct().ToList() is { Count: > 1 } copies)
                throw new LibTorchLoadException(setting, copies[1], $"two copies of {name} are mapped ({string.Join(", ", copies)}); keep one.");
    }

    /// <summary>A libtorch beside the program (a build's runtimes/ folder or a publish's own folder), or null.</summary>
    static string? OwnLibTorch() =>
        new[] { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") }
            .Select(d => Path.Combine(d, "libtorch_cpu.so")).FirstOrDefault(File.Exists);

    /// <summary>
    /// Fails with <paramref name="setting"/>'s name when the program has no libtorch beside it (a build made with
    /// <c>-p:TorchBackend=external</c>, such as the GPU bundle) and none was loaded from a folder, instead of letting
    /// TorchSharp fail with a page about NuGet packages.
    /// </summary>
    public static void RequireLibTorch(string setting)
    {
        if (s_loaded is null && OwnLibTorch() is null)
            throw new DeviceUnavailableException(setting,
                $"this build carries no libtorch of its own (TorchBackend=external): name a libtorch folder with --libtorch DIR, Silo:LibTorchPath or {EnvironmentVariable} (docs/gpu.md).");
    }

    /// <summary>
    /// The program's own shim first (a publish keeps it beside the program, a build under runtimes/), then the folder's:
    /// TorchSharp's own lookup by name finds the program's file, so using any other while that one exists would map two.
    /// To use a rebuilt shim, replace the program's file, or remove it and put the rebuilt one in the libtorch folder.
    /// </summary>
    static IEnumerable<string> ShimCandidates(string folder) =>
    [
        Path.Combine(AppContext.BaseDirectory, ShimFile),
        Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", ShimFile),
        Path.Combine(folder, ShimFile),
    ];

    static string TorchSharpVersion => typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "?";

    /// <summary>
    /// Declared by TorchSharp 0.107.0's managed code but exported by no shim of that release, the packaged one included
    /// (their native definitions are compiled out): dead declarations, not a sign of a foreign shim.
    /// </summary>
    static readonly HashSet<string> NeverExported =
    [
        "THSJIT_getDimensionedTensorTypeDimensions", "THSJIT_getDimensionedTensorDevice", "THSLinalg_dot", "THSTensor_eig", "THSTorch_lstsq",
    ];

    /// <summary>Every native entry point TorchSharp's managed code declares, so a shim missing any is refused up front.</summary>
    static IEnumerable<string> EntryPoints()
    {
        var methods = typeof(torch).Assembly.GetType("TorchSharp.PInvoke.NativeMethods")
            ?.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic) ?? [];
        var names = methods.Select(m => (Method: m, Import: m.GetCustomAttribute<DllImportAttribute>()))
            .Where(p => p.Import?.Value == "LibTorchSharp")
            .Select(p => p.Import!.EntryPoint ?? p.Method.Name)
            .Where(name => !NeverExported.Contains(name))
            .Distinct().ToList();
        // Should TorchSharp rename its P/Invoke class, still check the calls every process makes first.
        return names.Count > 0 ? names : ["THSTorch_get_and_reset_last_err", "THSTorchCuda_is_available", "THSTensor_zeros"];
    }

    static nint Open(string setting, string path, int mode)
    {
        // dlerror reports the last failure of this thread; clear it (and bind the P/Invoke) before the call it explains.
        _ = DlError();
        var handle = DlOpen(path, mode);
        if (handle != 0) return handle;
        var error = Marshal.PtrToStringUTF8(DlError()) ?? "unknown dlopen error";
        // dlerror starts with the file it failed on; the message names it once.
        if (error.StartsWith(path + ": ", StringComparison.Ordinal)) error = error[(path.Length + 2)..];
        throw new LibTorchLoadException(setting, path, $"cannot load '{path}': {error.ReplaceLineEndings(" ")}");
    }

    /// <summary>The paths of the mapped libraries named <paramref name="fileName"/> (one per mapped segment).</summary>
    static IEnumerable<string> MappedFiles(string fileName) =>
        File.ReadLines("/proc/self/maps")
            .Select(line => line.IndexOf('/') is var at and >= 0 ? line[at..] : null)
            .Where(p => p is not null && Path.GetFileName(p) == fileName)
            .Select(p => p!);

    [DllImport("libc.so.6", EntryPoint = "dlopen")]
    static extern nint DlOpen([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);

    [DllImport("libc.so.6", EntryPoint = "dlerror")]
    static extern nint DlError();
}

/// <summary>
/// A libtorch folder that cannot be used: missing, lacking a library, or holding one with an unresolved symbol.
/// <see cref="Setting"/> is the option, setting or environment variable that named it; <see cref="File"/> the file at fault.
/// </summary>
public sealed class LibTorchLoadException(string setting, string file, string problem) : Exception($"{setting}: {problem}")
{
    public string Setting { get; } = setting;

    public string File { get; } = file;

    /// <summary>The message without the setting's name, for callers that put the name in their own words.</summary>
    public string Problem { get; } = problem;
}
