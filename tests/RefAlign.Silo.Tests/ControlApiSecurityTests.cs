using System.Diagnostics;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using RefAlign.Client;

namespace RefAlign.Silo.Tests;

/// <summary>Who may call what on a real silo process: API keys with roles, health without a key, TLS, and a safe default.</summary>
[Trait("Tier", "Process")]
public sealed class ControlApiSecurityTests : IDisposable
{
    const string Viewer = "viewer-key-0123456789", Operator = "operator-key-0123456789";
    readonly DemoWorkspace _workspace = new("refalign-apisec-");

    public void Dispose() => _workspace.Dispose();

    [Fact]
    public async Task Keys_have_roles_health_needs_none_and_a_key_can_come_from_a_file()
    {
        var keyFile = Path.Combine(_workspace.Root, "operator.key");
        await File.WriteAllTextAsync(keyFile, Operator + "\n");
        await using var silo = await SiloProcess.StartAsync("roles", _workspace.Root,
            [$"--Silo:ApiKeys:0:Key={Viewer}", "--Silo:ApiKeys:0:Role=viewer", $"--Silo:ApiKeys:1:KeyFile={keyFile}", "--Silo:ApiKeys:1:Role=operator"]);
        RefAlignClient As(string? key) => new(new RefAlignClientOptions { Address = new Uri(silo.GrpcAddress), ApiKey = key });

        using var viewer = As(Viewer);
        Assert.NotEmpty((await viewer.GetClusterAsync()).Silos);
        Assert.Empty(await viewer.ListRunsAsync());
        var denied = await Assert.ThrowsAsync<RpcException>(() => viewer.StartRunAsync(TinyRuns.RefAlign("viewer", 2)));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Contains("viewer", denied.Status.Detail);

        using var op = As(Operator);
        var id = await op.StartRunAsync(TinyRuns.RefAlign("operator", 2));
        Assert.Equal(id, (await viewer.GetRunAsync(id)).RunId);
        await foreach (var _ in viewer.WatchRunAsync(id)) { }
        var stop = await Assert.ThrowsAsync<RpcException>(() => viewer.StopRunAsync(id));
        Assert.Equal(StatusCode.PermissionDenied, stop.StatusCode);

        using var nobody = As(null);
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => nobody.ListRunsAsync())).StatusCode);
        using var wrong = As("not-a-key-at-all-xxxx");
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => wrong.ListRunsAsync())).StatusCode);

        // What a Kubernetes gRPC readiness probe does: no key, and it is answered.
        using var channel = GrpcChannel.ForAddress(silo.GrpcAddress);
        var health = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
    }

    [Fact]
    public async Task Beyond_loopback_without_a_key_the_silo_refuses_to_start_unless_told_to_allow_anyone()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = _workspace.Root };
        foreach (var a in (string[])[BuiltTools.SiloDll, "--Silo:ListenIP=0.0.0.0", $"--Silo:GrpcPort={FreePorts.One()}", $"--Silo:HttpPort={FreePorts.One()}"])
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        _ = p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.Equal(2, p.ExitCode);
        Assert.StartsWith("refalign-silo: Invalid setting 'Silo:ApiKeys': the control API would listen on 0.0.0.0", (await stderr).Trim());

        await using var open = await SiloProcess.StartAsync("anonymous", _workspace.Root, ["--Silo:ListenIP=0.0.0.0", "--Silo:AllowAnonymous=true"]);
        using var client = new RefAlignClient(open.GrpcAddress);
        Assert.NotEmpty((await client.GetClusterAsync()).Silos);
    }

    [Fact]
    public async Task Tls_on_the_control_api_trusts_the_given_ca_and_nothing_else()
    {
        var certs = new TestCertificates(Path.Combine(_workspace.Root, "tls"));
        var other = new TestCertificates(Path.Combine(_workspace.Root, "other-tls"), "other");
        await using var silo = await SiloProcess.StartAsync("tls", _workspace.Root, [.. certs.SiloArgs, $"--Silo:ApiKey={Operator}"]);
        var address = $"https://127.0.0.1:{silo.GrpcPort}";

        using var trusted = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(address), ApiKey = Operator, CaCertificatePath = certs.CaPath });
        Assert.NotEmpty((await trusted.GetClusterAsync()).Silos);

        // A certificate from another CA, or none the system trusts: the handshake fails; nothing reaches the silo.
        static async Task Untrusted(RefAlignClient client)
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => client.GetClusterAsync());
            Exception? cause = e.Status.DebugException;
            while (cause is not null and not System.Security.Authentication.AuthenticationException) cause = cause.InnerException;
            Assert.True(cause is not null, $"{e.StatusCode}: {e.Status.DebugException}");
        }
        using var unknownCa = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(address), ApiKey = Operator, CaCertificatePath = other.CaPath });
        await Untrusted(unknownCa);
        using var systemTrust = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(address), ApiKey = Operator });
        await Untrusted(systemTrust);
        using var plaintext = new RefAlignClient(new RefAlignClientOptions { Address = new Uri(silo.GrpcAddress), ApiKey = Operator });
        await Assert.ThrowsAsync<RpcException>(() => plaintext.GetClusterAsync());

        // The CLI, as a user runs it.
        var cli = await CliRunner.RunAsync("cluster", "status", "--json", "--silo", address, "--api-key", Operator, "--ca-cert", certs.CaPath);
        Assert.True(cli.ExitCode == 0, cli.Stderr);
        Assert.Equal("tls", cli.Json["silos"]![0]!["name"]!.GetValue<string>());
    }
}
