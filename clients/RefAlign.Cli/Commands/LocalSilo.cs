using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace RefAlign.Cli.Commands;

/// <summary>
/// A silo started as a child process on free loopback ports (the demo's "local cluster"), stopped — gracefully, then
/// forcibly — when disposed. The silo build is found through REFALIGN_SILO_DLL (the ./refalign launcher sets it).
/// </summary>
internal sealed class LocalSilo : IAsyncDisposable
{
    readonly Process _process;
    public string GrpcAddress { get; }
    public string LogFile { get; }

    LocalSilo(Process process, string grpcAddress, string logFile)
    {
        _process = process;
        GrpcAddress = grpcAddress;
        LogFile = logFile;
    }

    public static string FindSiloDll()
    {
        var fromEnv = Environment.GetEnvironmentVariable("REFALIGN_SILO_DLL");
        string[] candidates = [fromEnv ?? "", Path.Combine(AppContext.BaseDirectory, "..", "silo", "RefAlign.Silo.dll"), Path.Combine(AppContext.BaseDirectory, "RefAlign.Silo.dll")];
        return candidates.FirstOrDefault(File.Exists)
               ?? throw new ArgumentException("cannot find RefAlign.Silo.dll: run through ./refalign (which builds it) or set REFALIGN_SILO_DLL.");
    }

    /// <summary>
    /// How to start the silo in <paramref name="dll"/>'s folder: its own executable in a self-contained publish (the GPU
    /// bundle, on a machine without .NET), else <c>dotnet RefAlign.Silo.dll</c>.
    /// </summary>
    public static ProcessStartInfo StartInfo(string dll)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(dll))!;
        var executable = Path.Combine(folder, Path.GetFileNameWithoutExtension(dll));
        if (File.Exists(Path.Combine(folder, "libcoreclr.so")) && File.Exists(executable)) return new ProcessStartInfo(executable) { UseShellExecute = false };
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        return psi;
    }

    /// <summary>The silo-to-silo port, for a second silo's <c>Cluster:PrimarySiloEndpoint</c>.</summary>
    public int SiloPort { get; private init; }

    public static async Task<LocalSilo> StartAsync(string workDir, CancellationToken cancellation, string name = "silo", params string[] extraArgs)
    {
        var dll = FindSiloDll();
        var (grpc, http, silo, gateway) = FreePorts();
        var log = Path.Combine(workDir, $"{name}.log");
        var psi = StartInfo(dll);
        psi.WorkingDirectory = workDir;
        psi.RedirectStandardOutput = psi.RedirectStandardError = true;
        foreach (var a in (string[])[$"--Silo:GrpcPort={grpc}", $"--Silo:HttpPort={http}", $"--Silo:SiloPort={silo}", $"--Silo:GatewayPort={gateway}",
                     "--Silo:ShutdownGracePeriod=00:00:05", "--Logging:LogLevel:Default=Warning", $"--Silo:SiloName={name}", .. extraArgs])
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start the silo process.");
        var writer = new StreamWriter(log) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var local = new LocalSilo(process, $"http://127.0.0.1:{grpc}", log) { SiloPort = silo };
        using var http1 = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                process.WaitForExit(); // the log's last lines are in once the output streams have ended
                throw new InvalidOperationException($"the silo exited with code {process.ExitCode}; see {log}:{Environment.NewLine}{Tail(log, 12)}");
            }
            try
            {
                if ((await http1.GetAsync($"http://127.0.0.1:{http}/healthz", cancellation)).StatusCode == HttpStatusCode.OK) return local;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) when (!cancellation.IsCancellationRequested) { }
            await Task.Delay(250, cancellation);
        }
        await local.DisposeAsync();
        throw new TimeoutException($"the silo did not become healthy within 90 s; see {log}.");
    }

    /// <summary>Four distinct free loopback ports: held open together while picked, so no two are the same.</summary>
    static (int, int, int, int) FreePorts()
    {
        var listeners = Enumerable.Range(0, 4).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToArray();
        try
        {
            foreach (var l in listeners) l.Start();
            var p = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
            return (p[0], p[1], p[2], p[3]);
        }
        finally
        {
            foreach (var l in listeners) l.Stop();
        }
    }

    /// <summary>The last <paramref name="lines"/> lines of the silo's log, where its reason for exiting is.</summary>
    static string Tail(string log, int lines)
    {
        using var reader = new StreamReader(new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite));
        return string.Join(Environment.NewLine, reader.ReadToEnd().Split('\n').TakeLast(lines));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            // SIGTERM: the host's graceful shutdown lets running work finish and leaves the cluster cleanly.
            Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])?.WaitForExit();
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try { await _process.WaitForExitAsync(wait.Token); }
            catch (OperationCanceledException) { _process.Kill(entireProcessTree: true); }
        }
        _process.Dispose();
    }
}
