using System.Diagnostics;
using System.Net.Sockets;

namespace RefAlign.TestSupport;

/// <summary>
/// A real <c>redis-server</c> on a free loopback port, started by the test (<c>.ci/run</c> installs Debian's package when
/// it is missing). A test that needs it fails when it cannot start: it never skips. It can be stopped and started again
/// on the same port (a Redis restart), keeping its data when <c>persist</c> is on (append-only file).
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("refalign-redis-").FullName;
    readonly string? _password;
    Process? _process;

    RedisServer(int port, string? password)
    {
        Port = port;
        _password = password;
    }

    public int Port { get; }

    /// <summary>StackExchange.Redis connection string for the silos' <c>Cluster:ConnectionString</c>.</summary>
    public string ConnectionString => _password is null ? $"127.0.0.1:{Port}" : $"127.0.0.1:{Port},password={_password}";

    public static async Task<RedisServer> StartAsync(string? password = null)
    {
        var server = new RedisServer(FreePorts.One(), password);
        await server.StartAsync();
        return server;
    }

    static string Binary() =>
        new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("redis-server is not installed; .ci/run installs it (apt-get install -y redis-server).");

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo(Binary()) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir };
        string[] args = ["--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", _dir,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"];
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (_password is not null)
        {
            psi.ArgumentList.Add("--requirepass");
            psi.ArgumentList.Add(_password);
        }
        _process = Process.Start(psi) ?? throw new InvalidOperationException("could not start redis-server");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"redis-server exited with code {_process.ExitCode} on port {Port}");
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", Port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    /// <summary>Kills the server (SIGKILL: a crash, no goodbye); its append-only file keeps what was acknowledged.</summary>
    public async Task KillAsync()
    {
        if (_process is not { HasExited: false } p) return;
        p.Kill();
        await p.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
    }
}
