using System.Diagnostics;
using System.Text.Json.Nodes;

namespace RefAlign.TestSupport;

/// <summary>libtorch folders for the <c>--libtorch</c> / <c>Silo:LibTorchPath</c> tests: the NuGet CPU one, and stubs.</summary>
public static class LibTorchFolders
{
    /// <summary>
    /// The CPU libtorch's own folder in the NuGet package cache (<c>libtorch-cpu-linux-x64/VERSION/runtimes/linux-x64/native</c>,
    /// the version the CLI was built with): libtorch_cpu.so and its siblings, no TorchSharp shim.
    /// </summary>
    public static string NuGetCpu
    {
        get
        {
            var deps = Path.ChangeExtension(BuiltTools.CliDll, ".deps.json");
            var libraries = JsonNode.Parse(File.ReadAllText(deps))!["libraries"]!.AsObject();
            var package = libraries.FirstOrDefault(l => l.Key.StartsWith("libtorch-cpu-linux-x64/", StringComparison.Ordinal)).Value?["path"]?.GetValue<string>()
                ?? throw new InvalidOperationException($"{deps} names no libtorch-cpu-linux-x64 package.");
            var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
                ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            var folder = Path.Combine(cache, package, "runtimes", "linux-x64", "native");
            return File.Exists(Path.Combine(folder, "libtorch_cpu.so"))
                ? folder : throw new DirectoryNotFoundException($"the NuGet package's libtorch is not at {folder} (NUGET_PACKAGES or ~/.nuget/packages).");
        }
    }

    /// <summary>
    /// Writes <paramref name="folder"/> with stand-ins for libtorch_cpu.so, libtorch.so and libc10.so (right sonames, one
    /// dummy function, none of libtorch's symbols), compiled with gcc: every shim built against libtorch fails to bind.
    /// </summary>
    public static string StubLibTorch(string folder)
    {
        Directory.CreateDirectory(folder);
        var source = Path.Combine(folder, "stub.c");
        File.WriteAllText(source, "int refalign_stub(void) { return 0; }\n");
        foreach (var name in (string[])["libtorch_cpu.so", "libtorch.so", "libc10.so"])
            Gcc(folder, "-shared", "-fPIC", $"-Wl,-soname,{name}", "-o", name, source);
        return folder;
    }

    /// <summary>A stand-in <c>libLibTorchSharp.so</c> exporting one of TorchSharp's entry points and none of the others.</summary>
    public static string StubShim(string folder)
    {
        Directory.CreateDirectory(folder);
        var source = Path.Combine(folder, "shim.c");
        File.WriteAllText(source, "const char* THSTorch_get_and_reset_last_err(void) { return 0; }\n");
        Gcc(folder, "-shared", "-fPIC", "-Wl,-soname,libLibTorchSharp.so", "-o", "libLibTorchSharp.so", source);
        return Path.Combine(folder, "libLibTorchSharp.so");
    }

    /// <summary>A folder of symbolic links to every file of <paramref name="source"/>, to add or replace files in.</summary>
    public static string LinkedCopy(string source, string folder)
    {
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.EnumerateFiles(source))
            File.CreateSymbolicLink(Path.Combine(folder, Path.GetFileName(file)), file);
        return folder;
    }

    static void Gcc(string workingDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo("gcc") { WorkingDirectory = workingDirectory, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"these tests compile stand-in libraries with gcc, which could not start ({e.Message}); install gcc.", e);
        }
        using (p)
        {
            var stderr = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException($"gcc {string.Join(' ', args)} failed: {stderr}");
        }
    }
}
