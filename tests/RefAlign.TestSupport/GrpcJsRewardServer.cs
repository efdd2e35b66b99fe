using System.Diagnostics;

namespace RefAlign.TestSupport;

/// <summary>
/// The grpc-js programs of <c>tests/interop/grpc-js</c> (a control-API client and a RewardService): their npm modules,
/// installed from the committed lock file once per checkout, and the reward server as a process this test owns.
/// </summary>
public sealed class GrpcJsRewardServer : IAsyncDisposable
{
    public static string Folder => Path.Combine(BuiltTools.RepositoryRoot, "tests", "interop", "grpc-js");

    /// <summary><c>npm ci</c> from the lock file unless done already (node_modules is ignored by git).</summary>
    public static async Task EnsureModulesAsync()
    {
        if (Directory.Exists(Path.Combine(Folder, "node_modules", "@grpc", "grpc-js"))) return;
        var r = await ExternalTool.RunAsync("npm", ["ci", "--no-audit", "--no-fund", "--prefix", Folder], Folder, timeout: TimeSpan.FromMinutes(5));
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"npm ci failed ({r.ExitCode}); the grpc-js programs need Node.js, npm and the npm registry:\n{System.Text.Encoding.UTF8.GetString(r.Stdout)}\n{r.Stderr}");
    }

    readonly Process _node;
    readonly TestCertificates _tls;
    readonly string _apiKey;
    readonly int _port;

    GrpcJsRewardServer(Process node, int port, TestCertificates tls, string apiKey)
    {
        (_node, _port, _tls, _apiKey) = (node, port, tls, apiKey);
        Url = $"https://127.0.0.1:{port}";
    }

    public string Url { get; }

    /// <summary>
    /// Starts <c>reward_server.mjs</c> on a free loopback port (or <paramref name="port"/>) with <paramref name="tls"/>'s
    /// certificate and waits until it listens.
    /// </summary>
    public static async Task<GrpcJsRewardServer> StartAsync(TestCertificates tls, string apiKey, int? port = null)
    {
        await EnsureModulesAsync();
        var listen = port ?? FreePorts.One();
        var proto = Path.Combine(BuiltTools.RepositoryRoot, "clients", "RefAlign.Client", "Protos", "refalign_reward.proto");
        var psi = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Folder };
        foreach (var a in new[] { Path.Combine(Folder, "reward_server.mjs"), listen.ToString(System.Globalization.CultureInfo.InvariantCulture), tls.CertificatePath, tls.KeyPath, proto, apiKey })
            psi.ArgumentList.Add(a);
        var node = Process.Start(psi) ?? throw new InvalidOperationException("node did not start");
        var stderr = node.StandardError.ReadToEndAsync();
        using var wait = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            while (await node.StandardOutput.ReadLineAsync(wait.Token) is { } line)
                if (line.StartsWith("listening ", StringComparison.Ordinal)) return new GrpcJsRewardServer(node, listen, tls, apiKey);
        }
        catch (OperationCanceledException) { }
        node.Kill();
        await node.WaitForExitAsync();
        throw new InvalidOperationException($"reward_server.mjs did not start listening: {await stderr}");
    }

    /// <summary>SIGKILL: the service is gone mid-call, its connections reset, its port refuses new ones.</summary>
    public async Task KillAsync()
    {
        _node.Kill();
        await _node.WaitForExitAsync();
    }

    /// <summary>A new server process on the same address (after <see cref="KillAsync"/>).</summary>
    public Task<GrpcJsRewardServer> RestartAsync() => StartAsync(_tls, _apiKey, _port);

    public async ValueTask DisposeAsync()
    {
        if (!_node.HasExited) _node.Kill();
        await _node.WaitForExitAsync();
        _node.Dispose();
    }
}
