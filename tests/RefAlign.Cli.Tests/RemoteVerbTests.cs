using System.Text.RegularExpressions;

namespace RefAlign.Cli.Tests;

/// <summary>A real silo process (tiny models, the demo data, an API key) for the remote verbs, started once.</summary>
public sealed class RemoteSiloFixture : IAsyncLifetime
{
    public const string Key = "k3y";

    public DemoWorkspace Workspace { get; } = new("refalign-cli-remote-");

    public SiloProcess Silo { get; private set; } = null!;

    // Started in the workspace: the run configs' relative paths resolve against the silo's working directory.
    public async Task InitializeAsync() =>
        Silo = await SiloProcess.StartAsync("cli-silo", Workspace.Root, [$"--Silo:ApiKey={Key}"]);

    public async Task DisposeAsync()
    {
        await Silo.DisposeAsync();
        Workspace.Dispose();
    }
}

/// <summary>The <c>refalign run …</c> and <c>cluster status</c> verbs as child processes against a real silo process.</summary>
[Trait("Tier", "Process")]
public sealed class RemoteVerbTests(RemoteSiloFixture fixture) : IClassFixture<RemoteSiloFixture>
{
    string Config(int steps) => TinyRuns.Write(fixture.Workspace.Root, TinyRuns.RefAlign("cli-run", steps));

    Task<CliRunner.Result> Cli(params string[] args) =>
        CliRunner.RunAsync([.. args, "--silo", fixture.Silo.GrpcAddress, "--api-key", RemoteSiloFixture.Key]);

    async Task<string> StatusOf(string id) => (await Cli("run", "status", id, "--json")).Json["status"]!.GetValue<string>();

    [Fact]
    public async Task Start_status_list_stop_resume_and_watch_a_real_run()
    {
        var start = await Cli("run", "start", "--config", Config(steps: 6), "--json");
        Assert.True(start.ExitCode == 0, start.Stderr);
        var id = start.Json["run_id"]!.GetValue<string>();

        var status = await Cli("run", "status", id, "--json");
        Assert.True(status.ExitCode == 0, status.Stderr);
        var j = status.Json;
        Assert.Equal(id, j["run_id"]!.GetValue<string>());
        Assert.Contains(j["status"]!.GetValue<string>(), new[] { "running", "completed" });
        Assert.Equal(0.01, j["config"]!["optimizer"]!["learning_rate"]!.GetValue<double>());
        // Relative paths were resolved against the silo's working directory, the documented base.
        Assert.Equal(Path.Combine(fixture.Workspace.Root, "policy"), j["config"]!["policy"]!["model"]!.GetValue<string>());

        var list = await Cli("run", "list", "--json");
        Assert.True(list.ExitCode == 0, list.Stderr);
        Assert.Contains(id, list.Json["runs"]!.AsArray().Select(r => r!["run_id"]!.GetValue<string>()));

        var stop = await Cli("run", "stop", id, "--json");
        Assert.True(stop.ExitCode == 0, stop.Stderr);
        Assert.Contains(stop.Json["status"]!.GetValue<string>(), new[] { "stopping", "stopped", "completed" });
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        string now;
        while ((now = await StatusOf(id)) is "stopping" or "running" && DateTime.UtcNow < deadline) await Task.Delay(250);
        if (now == "stopped")
        {
            var resume = await Cli("run", "resume", id);
            Assert.True(resume.ExitCode == 0, resume.Stderr);
            Assert.Contains("running", resume.Stdout);
        }

        // stdout is redirected here, so the watch prints plain lines (no progress bar, no escape codes).
        var watch = await Cli("run", "watch", id);
        Assert.True(watch.ExitCode == 0, watch.Stderr);
        Assert.True(Regex.IsMatch(watch.Stdout, @"step 6/6 · reward [0-9.]+ · loss \S+ · [0-9]+ tok/s · generate [0-9.]+s, score [0-9.]+s, learn [0-9.]+s"), watch.Stdout);
        Assert.Contains($"run {id} completed at step 6/6", watch.Stdout);
        Assert.DoesNotContain("\u001b[", watch.Stdout);

        var all = await Cli("run", "watch", id, "--json");
        var after2 = await Cli("run", "watch", id, "--json", "--after", "2");
        Assert.True(after2.ExitCode == 0, after2.Stderr);
        var sequences = all.JsonLines.Select(e => e["sequence"]!.GetValue<long>()).ToList();
        Assert.Equal(Enumerable.Range(1, sequences.Count).Select(i => (long)i), sequences);
        Assert.Equal(sequences.Skip(2), after2.JsonLines.Select(e => e["sequence"]!.GetValue<long>()));
        Assert.Equal("completed", all.JsonLines[^1]["status"]!.GetValue<string>());
    }

    [Fact]
    public async Task Cluster_status_shows_the_silo_its_roles_and_device()
    {
        var r = await Cli("cluster", "status", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var silo = Assert.Single(r.Json["silos"]!.AsArray())!;
        Assert.Equal("cli-silo", silo["name"]!.GetValue<string>());
        Assert.Equal("cpu", silo["device"]!.GetValue<string>());
        Assert.Equal("cpu", silo["libtorch"]!.GetValue<string>()); // the build the silo loaded: a CPU build here
        Assert.Equal(["generator", "scorer", "reference", "learner"], silo["roles"]!.AsArray().Select(x => x!.GetValue<string>()));
        var plain = await Cli("cluster", "status");
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Contains("cli-silo", plain.Stdout);
    }

    [Fact]
    public async Task Errors_are_one_line_with_an_exit_code()
    {
        var badPath = Path.Combine(fixture.Workspace.Root, "bad.json");
        File.WriteAllText(badPath, File.ReadAllText(Config(steps: 2)).Replace("\"learning_rate\": 0.01", "\"learning_rate\": 0", StringComparison.Ordinal));
        var bad = await Cli("run", "start", "--config", badPath);
        Assert.Equal(2, bad.ExitCode);
        Assert.Equal("error: invalid argument: field 'optimizer.learning_rate' must be > 0.", bad.Stderr.Trim());

        var missing = await Cli("run", "status", "nope");
        Assert.Equal(2, missing.ExitCode);
        Assert.Equal("error: not found: run 'nope' does not exist.", missing.Stderr.Trim());

        var noFile = await Cli("run", "start", "--config", Path.Combine(fixture.Workspace.Root, "absent.json"));
        Assert.Equal(2, noFile.ExitCode);
        Assert.StartsWith("error: run config file", noFile.Stderr.Trim());

        var noKey = await CliRunner.RunAsync("run", "list", "--silo", fixture.Silo.GrpcAddress);
        Assert.Equal(2, noKey.ExitCode);
        Assert.StartsWith("error: unauthenticated:", noKey.Stderr.Trim());

        // The key and address can come from the environment instead.
        var fromEnv = await CliRunner.RunAsync(new Dictionary<string, string?> { ["REFALIGN_SILO"] = fixture.Silo.GrpcAddress, ["REFALIGN_API_KEY"] = RemoteSiloFixture.Key },
            "run", "list", "--json");
        Assert.True(fromEnv.ExitCode == 0, fromEnv.Stderr);

        var unreachable = await CliRunner.RunAsync("run", "list", "--silo", $"http://127.0.0.1:{FreePorts.One()}");
        Assert.Equal(3, unreachable.ExitCode);
        Assert.StartsWith("error: silo unreachable at http://127.0.0.1:", unreachable.Stderr.Trim());
        Assert.Single(unreachable.Stderr.Trim().Split('\n'));
    }
}
