namespace RefAlign.Cli.Tests;

/// <summary>
/// <c>refalign artifact push|list|pull|rm</c> and <c>run pull</c> as child processes against a real silo process: a run
/// named by pushed artifacts, its checkpoint pulled back bit for bit, errors as one line and exit code 2.
/// </summary>
[Trait("Tier", "Process")]
public sealed class ArtifactVerbTests(RemoteSiloFixture fixture) : IClassFixture<RemoteSiloFixture>
{
    string Root => fixture.Workspace.Root;

    Task<CliRunner.Result> Cli(params string[] args) =>
        CliRunner.RunAsync([.. args, "--silo", fixture.Silo.GrpcAddress, "--api-key", RemoteSiloFixture.Key]);

    [Fact]
    public async Task Push_list_a_run_by_artifact_names_run_pull_artifact_pull_and_rm()
    {
        var data = await Cli("artifact", "push", Path.Combine(Root, "data", "references.jsonl"), "--name", "datasets/cli-refs", "--json");
        Assert.True(data.ExitCode == 0, data.Stderr);
        Assert.Equal("data", data.Json["kind"]!.GetValue<string>());
        var policy = await Cli("artifact", "push", Path.Combine(Root, "policy"), "--name", "models/cli-policy", "--json");
        Assert.True(policy.ExitCode == 0, policy.Stderr);
        Assert.Equal("model", policy.Json["kind"]!.GetValue<string>()); // guessed from config.json
        var list = await Cli("artifact", "list", "--json");
        Assert.Equal(["datasets/cli-refs", "models/cli-policy"], list.Json["artifacts"]!.AsArray().Select(a => a!["name"]!.GetValue<string>()).Where(n => n.Contains("cli-")));
        Assert.True(list.Json["stored_bytes"]!.GetValue<long>() > 0);

        var config = TinyRuns.RefAlign("cli-artifacts", steps: 2, checkpointEvery: 2)
            .Replace("\"model\": \"policy\"", "\"model\": \"artifact:models/cli-policy\"", StringComparison.Ordinal)
            .Replace("\"path\": \"data/references.jsonl\"", "\"path\": \"artifact:datasets/cli-refs\"", StringComparison.Ordinal);
        var start = await Cli("run", "start", "--config", TinyRuns.Write(Root, config), "--json");
        Assert.True(start.ExitCode == 0, start.Stderr);
        var id = start.Json["run_id"]!.GetValue<string>();
        Assert.Equal(0, (await Cli("run", "watch", id)).ExitCode);
        var status = await Cli("run", "status", id, "--json");
        Assert.Equal("completed", status.Json["status"]!.GetValue<string>());

        var trained = Path.Combine(Root, $"trained-{id}");
        var pull = await Cli("run", "pull", id, "--out", trained, "--json");
        Assert.True(pull.ExitCode == 0, pull.Stderr);
        Assert.Contains("model.safetensors", pull.Json["files"]!.AsArray().Select(f => f!.GetValue<string>()));
        var checkpoint = status.Json["latest_checkpoint"]!.GetValue<string>();
        Assert.Equal(File.ReadAllBytes(Path.Combine(checkpoint, "policy", "model.safetensors")), File.ReadAllBytes(Path.Combine(trained, "model.safetensors")));
        var again = await Cli("run", "pull", id, "--out", trained);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("not empty", again.Stderr);

        var copy = Path.Combine(Root, $"copy-{id}");
        Assert.Equal(0, (await Cli("artifact", "pull", "datasets/cli-refs", "--out", copy)).ExitCode);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Root, "data", "references.jsonl")), File.ReadAllBytes(Path.Combine(copy, "references.jsonl")));
        Assert.Equal(0, (await Cli("artifact", "rm", "datasets/cli-refs")).ExitCode);
        var gone = await Cli("artifact", "pull", "datasets/cli-refs", "--out", Path.Combine(Root, $"gone-{id}"));
        Assert.Equal(2, gone.ExitCode);
        Assert.Contains("error: not found: artifact 'datasets/cli-refs' does not exist", gone.Stderr);
        var noReport = await Cli("run", "pull", id, "--eval", "--out", Path.Combine(Root, $"report-{id}"));
        Assert.Equal(2, noReport.ExitCode);
        Assert.Contains($"reports/{id}", noReport.Stderr);
    }

    [Fact]
    public async Task A_push_over_either_quota_is_resource_exhausted_before_a_byte_is_stored()
    {
        using var workspace = new DemoWorkspace("refalign-cli-quota-");
        await using var silo = await SiloProcess.StartAsync("quota-silo", workspace.Root,
            ["--Limits:MaxArtifactBytes=1000000", "--Limits:MaxArtifactStoreBytes=1500000"]);
        async Task<CliRunner.Result> Push(string name, int bytes)
        {
            var folder = Path.Combine(workspace.Root, name.Replace('/', '-'));
            Directory.CreateDirectory(folder);
            File.WriteAllBytes(Path.Combine(folder, "blob.bin"), System.Security.Cryptography.RandomNumberGenerator.GetBytes(bytes));
            return await CliRunner.RunAsync("artifact", "push", folder, "--name", name, "--kind", "report", "--silo", silo.GrpcAddress);
        }
        var big = await Push("reports/too-big", 1_200_000);
        Assert.Equal(2, big.ExitCode);
        Assert.Contains("error: resource exhausted:", big.Stderr);
        Assert.Contains("Limits:MaxArtifactBytes", big.Stderr);
        Assert.Equal(0, (await Push("reports/fits", 900_000)).ExitCode);
        var over = await Push("reports/one-too-many", 700_000);
        Assert.Equal(2, over.ExitCode);
        Assert.Contains("Limits:MaxArtifactStoreBytes", over.Stderr);
        var uploads = Path.Combine(workspace.Root, "artifacts", "uploads");
        Assert.Empty(Directory.GetFiles(uploads)); // refused before a partial copy was started
        Assert.Equal(["fits.json"], Directory.GetFiles(Path.Combine(workspace.Root, "artifacts", "names", "reports")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_bad_name_and_a_missing_source_are_one_line_errors()
    {
        var bad = await Cli("artifact", "push", Path.Combine(Root, "policy"), "--name", "../escape");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("field 'name' is '../escape'", bad.Stderr);
        var missing = await Cli("artifact", "push", Path.Combine(Root, "no-such-folder"), "--name", "models/x");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("no-such-folder", missing.Stderr);
        Assert.DoesNotContain("   at ", missing.Stderr);
    }
}

/// <summary><c>refalign demo</c>, shortened: it pushes its inputs as artifacts, trains from them and pulls the policy back.</summary>
[Trait("Tier", "Process")]
public sealed class DemoTests : IDisposable
{
    readonly string _work = Directory.CreateTempSubdirectory("refalign-demo-test-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    [Fact]
    public async Task The_demo_trains_from_pushed_artifacts_and_pulls_the_trained_policy_back()
    {
        var r = await CliRunner.RunAsync(new Dictionary<string, string?> { ["REFALIGN_SILO_DLL"] = BuiltTools.SiloDll }, null, TimeSpan.FromMinutes(8),
            "demo", "--work", _work, "--refalign-steps", "4", "--srdpo-steps", "2", "--json");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.All(r.Json["runs"]!.AsArray(), run => Assert.Equal("completed", run!["status"]!.GetValue<string>()));
        var names = Directory.GetFiles(Path.Combine(_work, "artifacts", "names"), "*.json", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(Path.Combine(_work, "artifacts", "names"), f)).Order(StringComparer.Ordinal);
        Assert.Equal(["datasets/demo-preferences.json", "datasets/demo-references.json", "models/demo-encoder.json", "models/demo-policy.json"], names);
        var trained = r.Json["trained_policy"]!.GetValue<string>();
        var refalign = r.Json["runs"]![0]!["run"]!.GetValue<string>();
        var checkpoint = Path.Combine(_work, "runs", refalign, "checkpoints", "step-000004", "policy");
        foreach (var file in Directory.GetFiles(checkpoint))
            Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(Path.Combine(trained, Path.GetFileName(file))));
    }
}
