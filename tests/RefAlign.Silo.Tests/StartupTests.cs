using System.Diagnostics;

namespace RefAlign.Silo.Tests;

/// <summary>The silo process refusing to start, with one line an operator can act on.</summary>
public sealed class StartupTests
{
    static Task<(int Code, string Stderr)> RunSiloAsync(params string[] args) => RunSiloAsync(null, args);

    static async Task<(int Code, string Stderr)> RunSiloAsync(IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var (name, value) in env ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        psi.ArgumentList.Add(BuiltTools.SiloDll);
        var ports = FreePorts.Take(4);
        foreach (var a in (string[])[$"--Silo:GrpcPort={ports[0]}", $"--Silo:HttpPort={ports[1]}", $"--Silo:SiloPort={ports[2]}", $"--Silo:GatewayPort={ports[3]}", .. args])
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        _ = p.StandardOutput.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("the silo did not exit");
        }
        return (p.ExitCode, await stderr);
    }

    [Fact]
    public async Task Redis_unreachable_at_startup_exits_with_one_line_naming_the_setting()
    {
        var port = FreePorts.One(); // nothing listens there
        var (code, stderr) = await RunSiloAsync("--Cluster:Provider=Redis", $"--Cluster:ConnectionString=127.0.0.1:{port}");
        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith($"refalign-silo: Invalid setting 'Cluster:ConnectionString': Redis at 127.0.0.1:{port} is unreachable", line);
    }

    [Fact]
    public async Task A_bad_setting_exits_with_one_line_naming_it()
    {
        var (code, stderr) = await RunSiloAsync("--Timing:SupervisionPeriod=00:00:00.1");
        Assert.Equal(2, code);
        Assert.Equal("refalign-silo: Invalid setting 'Timing:SupervisionPeriod': 00:00:00.1000000 is shorter than 00:00:01.", stderr.Trim());
    }

    [Fact]
    public async Task Timings_that_do_not_fit_together_exit_naming_the_one_to_change()
    {
        // A worker call that gives up before membership declares its silo dead would fail steps instead of re-placing them.
        var (code, stderr) = await RunSiloAsync("--Timing:WorkerRetryBudget=00:00:05", "--Timing:ProbeTimeout=00:00:02");
        Assert.Equal(2, code);
        Assert.StartsWith("refalign-silo: Invalid setting 'Timing:WorkerRetryBudget': 00:00:05 is shorter than membership needs to declare a silo dead", stderr.Trim());
    }

    [Fact]
    public async Task A_gpu_device_on_a_cpu_build_stops_the_silo_with_one_line_naming_the_setting()
    {
        // This machine's libtorch is the CPU build: the silo must not start and attract the learner to train on the CPU.
        Assert.False(TorchSharp.torch.cuda.is_available());
        var (code, stderr) = await RunSiloAsync("--Silo:Device=cuda:0");
        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith("refalign-silo: Invalid setting 'Silo:Device': Silo:Device is 'cuda:0', but the loaded libtorch is a CPU build", line);
        Assert.Contains("-p:TorchBackend=cuda", line);
    }

    [Fact]
    public async Task A_missing_libtorch_folder_stops_the_silo_with_one_line_naming_the_setting()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"refalign-no-libtorch-{Guid.NewGuid():N}");
        var (code, stderr) = await RunSiloAsync($"--Silo:LibTorchPath={missing}");
        Assert.Equal(2, code);
        Assert.Equal($"refalign-silo: Invalid setting 'Silo:LibTorchPath': folder '{missing}' does not exist.", stderr.Trim());
    }

    [Fact]
    public async Task A_libtorch_folder_with_an_unresolved_symbol_stops_the_silo_naming_the_variable_file_and_symbol()
    {
        var stub = Directory.CreateTempSubdirectory("refalign-stub-libtorch-").FullName;
        try
        {
            LibTorchFolders.StubLibTorch(stub);
            var (code, stderr) = await RunSiloAsync(new Dictionary<string, string> { ["REFALIGN_LIBTORCH"] = stub });
            Assert.Equal(2, code);
            var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            Assert.Matches(@"^refalign-silo: Invalid setting 'REFALIGN_LIBTORCH': cannot load '[^']*/libLibTorchSharp\.so': undefined symbol: \S+", line);
        }
        finally { Directory.Delete(stub, recursive: true); }
    }
}
