using System.ComponentModel;
using System.Diagnostics;

namespace RefAlign.TestSupport;

/// <summary>What a finished external program left: its exit code, stdout as bytes (exactly as written) and stderr.</summary>
public sealed record ToolResult(int ExitCode, byte[] Stdout, string Stderr);

/// <summary>
/// Runs the reference tools that Debian serves to every machine here (<c>spm_train</c>, <c>spm_encode</c>,
/// <c>spm_decode</c>, <c>/usr/bin/python3</c> with torch and numpy; build/test-packages.txt lists the packages). A tool
/// that is missing or fails makes the calling test fail with what it printed: never a skip.
/// </summary>
public static class ExternalTool
{
    public static async Task<ToolResult> RunAsync(string program, IEnumerable<string> args, string? workingDirectory = null,
        string? stdinFile = null, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdinFile is not null,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"{program} did not start");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException(
                $"'{program}' could not be started ({e.Message}). It comes from Debian: install the packages in build/test-packages.txt.", e);
        }
        using (process)
        {
            using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(5));
            var stdout = new MemoryStream();
            var copy = process.StandardOutput.BaseStream.CopyToAsync(stdout, cancel.Token);
            var stderr = process.StandardError.ReadToEndAsync(cancel.Token);
            if (stdinFile is not null)
            {
                await using (var input = File.OpenRead(stdinFile)) await input.CopyToAsync(process.StandardInput.BaseStream, cancel.Token);
                process.StandardInput.Close();
            }
            try
            {
                await process.WaitForExitAsync(cancel.Token);
                await copy;
                return new ToolResult(process.ExitCode, stdout.ToArray(), await stderr);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"{program} {string.Join(' ', psi.ArgumentList)} did not finish within {timeout ?? TimeSpan.FromMinutes(5)}.");
            }
        }
    }

    /// <summary><see cref="RunAsync"/>, failing unless the program exits with 0.</summary>
    public static async Task<byte[]> RunCheckedAsync(string program, IEnumerable<string> args, string? workingDirectory = null,
        string? stdinFile = null, TimeSpan? timeout = null)
    {
        var list = args.ToList();
        var r = await RunAsync(program, list, workingDirectory, stdinFile, timeout);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"{program} {string.Join(' ', list)} exited with {r.ExitCode}:\n{r.Stderr}");
        return r.Stdout;
    }
}
