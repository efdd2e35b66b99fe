using System.Diagnostics;
using System.Text.Json.Nodes;

namespace RefAlign.TestSupport;

/// <summary>Runs the built <c>refalign</c> CLI as a child process, the way a user or a script does.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public JsonNode Json => JsonNode.Parse(Stdout) ?? throw new InvalidOperationException("no JSON on stdout");

        /// <summary>Stdout as JSON lines (verbs that stream, e.g. <c>run watch --json</c>).</summary>
        public IReadOnlyList<JsonNode> JsonLines =>
            [.. Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!)];
    }

    /// <summary>
    /// Runs <c>refalign ARGS</c> in <paramref name="workingDirectory"/> (default: this process's) with
    /// <paramref name="env"/> added; REFALIGN_SILO, REFALIGN_API_KEY and REFALIGN_LIBTORCH are cleared unless given, so
    /// the test decides what the CLI sees, not the developer's shell.
    /// </summary>
    public static Task<Result> RunAsync(IReadOnlyDictionary<string, string?>? env, string? workingDirectory, TimeSpan? timeout, params string[] args) =>
        RunProgramAsync("dotnet", env, workingDirectory, timeout, [BuiltTools.CliDll, .. args]);

    /// <summary>
    /// As <see cref="RunAsync(IReadOnlyDictionary{string, string?}?, string?, TimeSpan?, string[])"/>, for another build of
    /// the CLI: <paramref name="program"/> (a self-contained publish's <c>refalign</c>) with <paramref name="args"/>.
    /// </summary>
    public static async Task<Result> RunProgramAsync(string program, IReadOnlyDictionary<string, string?>? env, string? workingDirectory, TimeSpan? timeout,
        params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("REFALIGN_SILO");
        psi.Environment.Remove("REFALIGN_API_KEY");
        psi.Environment.Remove("REFALIGN_LIBTORCH");
        psi.Environment["REFALIGN_SILO_DLL"] = BuiltTools.SiloDll;
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(3));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish; stderr: {await stderr}");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }

    public static Task<Result> RunAsync(IReadOnlyDictionary<string, string?>? env, params string[] args) => RunAsync(env, null, null, args);

    public static Task<Result> RunAsync(params string[] args) => RunAsync(null, null, null, args);

    /// <summary>Synchronous form for tests that are not async.</summary>
    public static Result Run(params string[] args) => RunAsync(args).GetAwaiter().GetResult();
}
