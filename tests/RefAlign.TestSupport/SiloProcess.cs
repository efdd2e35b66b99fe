using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace RefAlign.TestSupport;

/// <summary>
/// A real silo process (the built <c>RefAlign.Silo</c>) on free loopback ports, started by a test that keeps its PID:
/// it can be killed with SIGKILL (the honest fault), stopped with SIGTERM (a drain), and started again on the same ports.
/// Output goes to <see cref="LogFile"/>; <see cref="Log"/> reads it back for assertion messages.
/// </summary>
public sealed class SiloProcess : IAsyncDisposable
{
    readonly string[] _args;
    readonly IReadOnlyDictionary<string, string?> _env;
    readonly bool _viaCli;
    readonly string? _executable;
    Process? _process;
    StreamWriter? _log;

    SiloProcess(string name, string workingDirectory, string[] args, IReadOnlyDictionary<string, string?> env, int[] ports, bool viaCli, string? executable)
    {
        _viaCli = viaCli;
        _executable = executable;
        Name = name;
        WorkingDirectory = workingDirectory;
        _args = args;
        _env = env;
        (GrpcPort, HttpPort, SiloPort, GatewayPort, WeightPort) = (ports[0], ports[1], ports[2], ports[3], ports[4]);
        LogFile = Path.Combine(workingDirectory, $"{name}.log");
    }

    public string Name { get; }
    public string WorkingDirectory { get; }
    public int GrpcPort { get; }
    public int HttpPort { get; }
    public int SiloPort { get; }
    public int GatewayPort { get; }
    public int WeightPort { get; }
    public string LogFile { get; }
    public string GrpcAddress => $"http://127.0.0.1:{GrpcPort}";
    public int Pid => _process?.Id ?? 0;
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>
    /// Starts a silo named <paramref name="name"/> with <paramref name="args"/> (e.g. <c>--Silo:Roles=learner</c>) in
    /// <paramref name="workingDirectory"/>, and waits until <c>/healthz</c> answers 200. With <paramref name="viaCli"/>
    /// it is started as users do, through <c>refalign silo</c>; with <paramref name="executable"/>, that program (a
    /// self-contained publish) instead of the built silo.
    /// </summary>
    public static async Task<SiloProcess> StartAsync(string name, string workingDirectory, IEnumerable<string>? args = null,
        IReadOnlyDictionary<string, string?>? env = null, TimeSpan? timeout = null, bool viaCli = false, string? executable = null)
    {
        var silo = new SiloProcess(name, workingDirectory, [.. args ?? []], env ?? new Dictionary<string, string?>(), FreePorts.Take(5), viaCli, executable);
        try
        {
            await silo.StartAsync(timeout);
        }
        catch
        {
            await silo.DisposeAsync(); // a silo that never became healthy is not left behind
            throw;
        }
        return silo;
    }

    /// <summary>(Re)starts the process on this silo's ports and waits for health.</summary>
    public async Task StartAsync(TimeSpan? timeout = null)
    {
        if (IsRunning) throw new InvalidOperationException($"silo {Name} is already running");
        var psi = new ProcessStartInfo(_executable ?? "dotnet")
        {
            WorkingDirectory = WorkingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        string[] fixedArgs =
        [
            .. _executable is not null ? [] : _viaCli ? (string[])[BuiltTools.CliDll, "silo"] : [BuiltTools.SiloDll], $"--Silo:SiloName={Name}", $"--Silo:GrpcPort={GrpcPort}", $"--Silo:HttpPort={HttpPort}",
            $"--Silo:SiloPort={SiloPort}", $"--Silo:GatewayPort={GatewayPort}", $"--Silo:WeightPort={WeightPort}",
            "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:RefAlign=Information",
            "--Logging:Console:TimestampFormat=HH:mm:ss.fff ", // failures are read against the tests' clock
        ];
        foreach (var a in fixedArgs.Concat(_args)) psi.ArgumentList.Add(a);
        foreach (var name in psi.Environment.Keys.Where(k => k.StartsWith("REFALIGN_", StringComparison.Ordinal) || k.StartsWith("OTEL_", StringComparison.Ordinal)).ToList())
            psi.Environment.Remove(name);
        psi.Environment["REFALIGN_SILO_DLL"] = BuiltTools.SiloDll;
        foreach (var (k, v) in _env) psi.Environment[k] = v;
        _log ??= new StreamWriter(new FileStream(LogFile, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        var log = _log;
        lock (log) log.WriteLine($"==== start {DateTime.UtcNow:O}");
        var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start the silo process");
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        await WaitHealthyAsync(timeout ?? TimeSpan.FromMinutes(3));
    }

    async Task WaitHealthyAsync(TimeSpan timeout)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (_process!.HasExited)
                throw new InvalidOperationException($"silo {Name} exited with code {_process.ExitCode}:\n{Log()}");
            try
            {
                if ((await http.GetAsync($"http://127.0.0.1:{HttpPort}/healthz")).StatusCode == HttpStatusCode.OK) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            await Task.Delay(200);
        }
        throw new TimeoutException($"silo {Name} did not become healthy within {timeout}:\n{Log()}");
    }

    /// <summary>SIGKILL: no drain, no goodbye to the cluster.</summary>
    public async Task KillAsync()
    {
        if (_process is not { HasExited: false } p) return;
        // Through the CLI the silo is a child of the process we started: take the whole tree down.
        if (_viaCli) p.Kill(entireProcessTree: true);
        else Signal("KILL", p.Id);
        await p.WaitForExitAsync();
        lock (_log!) _log.WriteLine($"==== killed {DateTime.UtcNow:O}");
    }

    /// <summary>SIGSTOP: the process stops answering without dying (a long GC pause, a partition), until <see cref="Thaw"/>.</summary>
    public void Freeze()
    {
        if (_process is { HasExited: false } p) Signal("STOP", p.Id);
        lock (_log!) _log.WriteLine($"==== frozen {DateTime.UtcNow:O}");
    }

    /// <summary>SIGCONT: a frozen process goes on where it stopped.</summary>
    public void Thaw()
    {
        if (_process is { HasExited: false } p) Signal("CONT", p.Id);
        lock (_log!) _log.WriteLine($"==== thawed {DateTime.UtcNow:O}");
    }

    /// <summary>Waits until the process has exited by itself (within <paramref name="timeout"/>); false when it has not.</summary>
    public async Task<bool> ExitedAsync(TimeSpan timeout)
    {
        if (_process is not { } p) return true;
        using var cts = new CancellationTokenSource(timeout);
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { return false; }
        return true;
    }

    /// <summary>SIGTERM, then waits up to <paramref name="timeout"/> for a graceful exit (then SIGKILL); returns the exit code.</summary>
    public async Task<int> TerminateAsync(TimeSpan? timeout = null)
    {
        if (_process is not { HasExited: false } p) return _process?.ExitCode ?? 0;
        Signal("TERM", p.Id);
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { p.Kill(entireProcessTree: true); await p.WaitForExitAsync(); }
        return p.ExitCode;
    }

    static void Signal(string signal, int pid) =>
        Process.Start("kill", [$"-{signal}", pid.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();

    /// <summary>The silo's output so far (the last <paramref name="lines"/> lines).</summary>
    public string Log(int lines = 60)
    {
        using var reader = new StreamReader(new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite));
        // Stack frames crowd out the events around them: a tail keeps the messages.
        var all = reader.ReadToEnd().Split('\n').Where(l => !l.TrimStart().StartsWith("at ", StringComparison.Ordinal)
            && !l.TrimStart().StartsWith("--- End of", StringComparison.Ordinal));
        return string.Join('\n', all.TakeLast(lines));
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
        _log?.Dispose();
    }
}
