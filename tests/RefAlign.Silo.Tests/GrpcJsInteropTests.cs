using System.Diagnostics;
using System.Text.Json;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The control API as a client on another toolchain sees it: <c>tests/interop/grpc-js/client.mjs</c> (@grpc/grpc-js and
/// @grpc/proto-loader from npm, built from <c>refalign_control.proto</c> at run time) against a real silo process with
/// TLS and two keys. The script only reports what it saw; this test judges it.
/// </summary>
[Trait("Tier", "Process")]
public sealed class GrpcJsInteropTests : IDisposable
{
    const string Viewer = "viewer-key-for-grpc-js-0123", Operator = "operator-key-for-grpc-js-0123";
    static readonly string ClientDir = GrpcJsRewardServer.Folder;
    readonly DemoWorkspace _workspace = new("refalign-grpcjs-");

    public void Dispose() => _workspace.Dispose();

    [Fact]
    public async Task A_grpc_js_client_built_from_the_proto_trains_a_run_over_tls_and_gets_the_documented_codes()
    {
        await GrpcJsRewardServer.EnsureModulesAsync();
        var certs = new TestCertificates(Path.Combine(_workspace.Root, "tls"));
        await using var silo = await SiloProcess.StartAsync("grpcjs", _workspace.Root,
            [.. certs.SiloArgs, $"--Silo:ApiKeys:0:Key={Operator}", "--Silo:ApiKeys:0:Role=operator",
             $"--Silo:ApiKeys:1:Key={Viewer}", "--Silo:ApiKeys:1:Role=viewer"]);
        var config = TinyRuns.Write(_workspace.Root, TinyRuns.RefAlign("grpc-js", steps: 2, checkpointEvery: 0));
        var proto = Path.Combine(BuiltTools.RepositoryRoot, "clients", "RefAlign.Client", "Protos", "refalign_control.proto");
        // An artifact's tar stream (the policy folder), made here the way a client makes it; node pushes and pulls the bytes.
        var tar = Path.Combine(_workspace.Root, "policy.tar");
        await using (var file = File.Create(tar))
        await using (var stream = RefAlign.Grains.Artifacts.ArtifactStream.OfFolder(Path.Combine(_workspace.Root, "policy")).OpenRead())
            await stream.CopyToAsync(file);

        var (exit, stdout, stderr) = await RunAsync("node",
            [Path.Combine(ClientDir, "client.mjs"), $"localhost:{silo.GrpcPort}", certs.CaPath, proto, Operator, Viewer, config, tar], TimeSpan.FromMinutes(5));
        Assert.True(exit == 0, $"node exited with {exit}: {stderr}\n{silo.Log()}");
        using var seen = JsonDocument.Parse(stdout);
        var s = seen.RootElement;
        string Code(string call) => s.GetProperty(call).TryGetProperty("name", out var n) ? n.GetString()! : "OK";
        string Details(string call) => s.GetProperty(call).GetProperty("details").GetString()!;

        Assert.Equal("SERVING", s.GetProperty("health").GetProperty("reply").GetProperty("status").GetString());
        Assert.Equal("UNAUTHENTICATED", Code("listWithoutKey"));
        Assert.Equal("UNAUTHENTICATED", Code("listWithWrongKey"));
        Assert.Equal("PERMISSION_DENIED", Code("startAsViewer"));
        Assert.Equal("INVALID_ARGUMENT", Code("hugeBatch"));
        Assert.True(Details("hugeBatch").Contains("batch_size", StringComparison.Ordinal), Details("hugeBatch"));
        Assert.Contains("Limits:MaxBatchSize", Details("hugeBatch"));
        Assert.Equal("INVALID_ARGUMENT", Code("outputOutsideRoot"));
        Assert.Contains("output_dir", Details("outputOutsideRoot"));
        Assert.Equal("INVALID_ARGUMENT", Code("deviceAsData"));
        Assert.Contains("data.path", Details("deviceAsData"));
        Assert.Equal("INVALID_ARGUMENT", Code("notJson"));
        Assert.Equal("NOT_FOUND", Code("unknownRun"));
        Assert.NotEmpty(s.GetProperty("cluster").GetProperty("reply").GetProperty("silos").EnumerateArray());

        // The run: started by the operator, watched by the viewer to its end, every event once and in order.
        Assert.Equal("OK", Code("start"));
        var watch = s.GetProperty("watch");
        Assert.Equal("OK", watch.GetProperty("name").GetString());
        var events = watch.GetProperty("events").EnumerateArray().ToList();
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.GetProperty("sequence").GetInt64()));
        var steps = events.Where(e => e.GetProperty("kind").GetString() == "RUN_EVENT_KIND_STEP").ToList();
        Assert.Equal([1, 2], steps.Select(e => e.GetProperty("step").GetInt32()));
        Assert.All(steps, e => Assert.True(e.GetProperty("metrics").TryGetProperty("reward/mean", out _), e.ToString()));
        Assert.Equal("RUN_STATUS_COMPLETED", events[^1].GetProperty("status").GetString());
        var finished = s.GetProperty("finished").GetProperty("reply");
        Assert.Equal("RUN_STATUS_COMPLETED", finished.GetProperty("status").GetString());
        Assert.Equal(2, finished.GetProperty("step").GetInt32());
        Assert.Single(s.GetProperty("list").GetProperty("reply").GetProperty("runs").EnumerateArray());

        // Artifacts: a viewer may list and pull but not push or remove; what comes back is what went.
        Assert.Equal("PERMISSION_DENIED", Code("pushAsViewer"));
        Assert.Equal("OK", Code("push"));
        var tarSeen = s.GetProperty("artifactTar");
        Assert.Equal(tarSeen.GetProperty("sha256").GetString(), s.GetProperty("push").GetProperty("reply").GetProperty("sha256").GetString());
        Assert.Equal("reports/grpc-js", Assert.Single(s.GetProperty("artifactList").GetProperty("reply").GetProperty("artifacts").EnumerateArray()).GetProperty("name").GetString());
        Assert.Equal("OK", Code("pull"));
        Assert.Equal(tarSeen.GetProperty("sha256").GetString(), s.GetProperty("pull").GetProperty("sha256").GetString());
        Assert.Equal(tarSeen.GetProperty("sha256").GetString(), s.GetProperty("pull").GetProperty("announced").GetString());
        Assert.Equal("PERMISSION_DENIED", Code("deleteAsViewer"));
        Assert.Equal("SERVING", s.GetProperty("healthAfter").GetProperty("reply").GetProperty("status").GetString());
        Assert.True(silo.IsRunning);
    }

    static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = ClientDir };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { p.Kill(entireProcessTree: true); throw new TimeoutException($"{file} ran past {timeout}"); }
        return (p.ExitCode, await stdout, await stderr);
    }
}
