using System.Diagnostics;
using System.Text.Json.Nodes;

namespace RefAlign.Cli.Tests;

/// <summary>
/// The GPU bundle (<c>tests/gpu/make-bundle.sh</c>: self-contained CLI and silo without a libtorch of their own), made
/// and unpacked here, then driven with the NuGet package's CPU libtorch folder the way a GPU machine drives its PyTorch.
/// </summary>
[Trait("Tier", "Process")]
public sealed class GpuBundleTests(GpuBundleTests.Bundle bundle) : IClassFixture<GpuBundleTests.Bundle>, IDisposable
{
    /// <summary>The archive, made once for the class (two self-contained publishes take minutes), and its unpacked tree.</summary>
    public sealed class Bundle : IDisposable
    {
        public string Root { get; } = Directory.CreateTempSubdirectory("refalign-gpu-bundle-").FullName;

        public string Archive => Path.Combine(Root, "refalign-gpu-linux-x64.tar.xz");

        public string CliFolder => Path.Combine(Root, "refalign-gpu", "cli");

        public string Cli => Path.Combine(CliFolder, "refalign");

        public string Silo => Path.Combine(Root, "refalign-gpu", "silo", "RefAlign.Silo");

        public Bundle()
        {
            // No native source staged: that copy is for the device check, not for these tests. xz's fast mode: the
            // default (-9) archive of the same files is smaller still, so the size bound below holds for it too.
            Run("bash", [Path.Combine(BuiltTools.RepositoryRoot, "tests", "gpu", "make-bundle.sh"), "--out", Archive, "--native-src", "", "--quick"], TimeSpan.FromMinutes(40));
            Run("tar", ["-C", Root, "-xJf", Archive], TimeSpan.FromMinutes(5));
        }

        public void Dispose() => Directory.Delete(Root, recursive: true);
    }

    readonly string _work = Directory.CreateTempSubdirectory("refalign-gpu-work-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    static void Run(string program, string[] args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish within {timeout}");
        }
        if (p.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result}{stdout.Result}");
    }

    Task<CliRunner.Result> Bundled(params string[] args) => CliRunner.RunProgramAsync(bundle.Cli, null, _work, null, args);

    [Fact]
    public void The_archive_is_under_60_MiB_and_carries_the_shim_but_no_libtorch()
    {
        // The quick archive is about 54 MiB where the default one is 47.5 MiB (docs/gpu.md).
        Assert.InRange(new FileInfo(bundle.Archive).Length, 1, 60L << 20);
        var natives = Directory.EnumerateFiles(Path.Combine(bundle.Root, "refalign-gpu"), "*.so*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
        Assert.DoesNotContain(natives, n => n!.StartsWith("libtorch", StringComparison.Ordinal) || n.StartsWith("libc10", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(bundle.CliFolder, "libLibTorchSharp.so")));
        Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(bundle.Silo)!, "libLibTorchSharp.so")));
    }

    [Fact]
    public async Task Help_runs_without_any_libtorch_and_names_the_option()
    {
        var r = await Bundled("--help");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("--libtorch", r.Stdout);
        Assert.Contains("logprobs", r.Stdout);
    }

    [Fact]
    public async Task A_verb_that_needs_libtorch_says_how_to_name_one()
    {
        var r = await Bundled("model", "init", "--preset", "tiny", "--out", "m");
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("error: this build carries no libtorch of its own", r.Stderr.Trim());
        Assert.Contains("--libtorch DIR", r.Stderr);
    }

    [Fact]
    public async Task With_the_cpu_libtorch_folder_logprobs_equal_the_ordinary_builds()
    {
        var cpu = LibTorchFolders.NuGetCpu;
        var init = await Bundled("--libtorch", cpu, "model", "init", "--preset", "tiny", "--arch", "qwen2", "--out", "m", "--seed", "3", "--json");
        Assert.True(init.ExitCode == 0, init.Stderr);
        string[] call = ["logprobs", "--model", Path.Combine(_work, "m"), "--prompt", "The capital of France is", "--completion", " Paris.", "--json"];
        var ours = await CliRunner.RunProgramAsync(bundle.Cli, new Dictionary<string, string?> { ["REFALIGN_LIBTORCH"] = cpu }, _work, null, call);
        Assert.True(ours.ExitCode == 0, ours.Stderr);
        var ordinary = await CliRunner.RunAsync(call);
        Assert.True(ordinary.ExitCode == 0, ordinary.Stderr);
        // The same libtorch binary and the same code, loaded another way: the same numbers, bit for bit.
        Assert.Equal(ordinary.Json["token_logprobs"]!.ToJsonString(), ours.Json["token_logprobs"]!.ToJsonString());
        Assert.Equal(ordinary.Json["sum_logprob"]!.GetValue<double>(), ours.Json["sum_logprob"]!.GetValue<double>());
        Assert.True(ours.Json["sum_logprob"]!.GetValue<double>() < 0);
    }

    [Fact]
    public async Task A_shim_lacking_an_entry_point_is_named()
    {
        // A copy of the CLI without its shim (hard links: the bundle's own files stay), and a folder whose shim is a stub.
        var cli = Path.Combine(_work, "cli");
        Run("cp", ["-al", bundle.CliFolder, cli], TimeSpan.FromMinutes(1));
        File.Delete(Path.Combine(cli, "libLibTorchSharp.so"));
        var folder = LibTorchFolders.LinkedCopy(LibTorchFolders.NuGetCpu, Path.Combine(_work, "libtorch"));
        var stub = LibTorchFolders.StubShim(folder);
        var r = await CliRunner.RunProgramAsync(Path.Combine(cli, "refalign"), null, _work, null, "--libtorch", folder, "model", "init", "--preset", "tiny", "--out", "m");
        Assert.Equal(2, r.ExitCode);
        var line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Matches($"^error: --libtorch: '{System.Text.RegularExpressions.Regex.Escape(stub)}' lacks the symbol \\S+ \\(and \\d+ more\\) that TorchSharp calls", line);
    }

    [Fact]
    public async Task The_bundled_silo_loads_the_folder_and_reports_it_in_healthz()
    {
        var cpu = LibTorchFolders.NuGetCpu;
        await using var silo = await SiloProcess.StartAsync("gpu-bundle", _work, [$"--Silo:LibTorchPath={cpu}"], executable: bundle.Silo);
        using var http = new HttpClient();
        var health = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{silo.HttpPort}/healthz"))!;
        var compute = health["checks"]!["compute"]!["data"]!;
        Assert.Equal(cpu, compute["libtorch_folder"]!.GetValue<string>());
        Assert.Equal("cpu", compute["libtorch"]!.GetValue<string>());
        Assert.Equal("cpu", compute["device"]!.GetValue<string>());
        Assert.Equal(0, await silo.TerminateAsync());
    }
}
