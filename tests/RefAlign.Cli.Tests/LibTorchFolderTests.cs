namespace RefAlign.Cli.Tests;

/// <summary>
/// <c>--libtorch DIR</c> / <c>REFALIGN_LIBTORCH</c>: a folder that cannot be used ends the CLI with exit code 2 and one
/// line naming the option, the file and, for an unresolved symbol, the symbol. These run the ordinary build (which
/// carries its own libtorch); a successful load is the GPU bundle's test (<c>GpuBundleTests</c>).
/// </summary>
public sealed class LibTorchFolderTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-libtorch-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static string OneLine(CliRunner.Result r)
    {
        Assert.Equal(2, r.ExitCode);
        Assert.DoesNotContain("   at ", r.Stderr);
        return Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public async Task A_missing_folder_is_named()
    {
        var missing = Path.Combine(_root, "no-such-folder");
        var line = OneLine(await CliRunner.RunAsync("--libtorch", missing, "logprobs", "--model", _root, "--prompt", "a", "--completion", "b"));
        Assert.Equal($"error: --libtorch: folder '{missing}' does not exist.", line);
    }

    [Fact]
    public async Task A_folder_without_libtorch_is_named_with_the_variable_that_gave_it()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_root, "empty")).FullName;
        var r = await CliRunner.RunAsync(new Dictionary<string, string?> { ["REFALIGN_LIBTORCH"] = empty },
            "logprobs", "--model", _root, "--prompt", "a", "--completion", "b");
        Assert.StartsWith($"error: REFALIGN_LIBTORCH: '{empty}' holds no libtorch_cpu.so", OneLine(r));
    }

    [Fact]
    public async Task A_libtorch_lacking_what_the_shim_needs_names_the_shim_and_the_symbol()
    {
        var stub = LibTorchFolders.StubLibTorch(Path.Combine(_root, "stub"));
        var line = OneLine(await CliRunner.RunAsync("--libtorch", stub, "logprobs", "--model", _root, "--prompt", "a", "--completion", "b"));
        // The shim is bound eagerly, so the first libtorch symbol it imports is missing at load time, not mid-step.
        Assert.Matches(@"^error: --libtorch: cannot load '[^']*/libLibTorchSharp\.so': undefined symbol: \S+", line);
    }

    [Fact]
    public async Task A_build_with_its_own_libtorch_refuses_a_folder_rather_than_map_two()
    {
        // TorchSharp's lookups by name would find this build's libtorch beside the folder's; libtorch aborts on a second copy.
        var line = OneLine(await CliRunner.RunAsync("--libtorch", LibTorchFolders.NuGetCpu, "model", "init", "--preset", "tiny", "--out", Path.Combine(_root, "m")));
        Assert.StartsWith("error: --libtorch: this program carries its own libtorch (", line);
        Assert.Contains("make-bundle.sh", line);
        Assert.False(Directory.Exists(Path.Combine(_root, "m")));
    }
}
