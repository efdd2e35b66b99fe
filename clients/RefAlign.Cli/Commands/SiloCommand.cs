using System.CommandLine;
using System.Diagnostics;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign silo [--Silo:Roles=…] [--Cluster:…]</c>: runs one silo in the foreground, in the current folder (the base
/// of relative run-config paths), with the repository's <c>appsettings.json</c>; every argument goes to the silo.
/// Ctrl-C or SIGTERM drains it gracefully.
/// </summary>
internal static class SiloCommand
{
    public static Command Create()
    {
        var settings = new Argument<string[]>("settings")
        {
            Description = "Silo settings as --Section:Key=value (e.g. --Silo:Roles=learner --Silo:GrpcPort=5090); see infra/README.md.",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var cmd = new Command("silo", "Run a silo in the foreground (Ctrl-C stops it gracefully).") { settings };
        cmd.TreatUnmatchedTokensAsErrors = false;
        cmd.SetAction(async (r, ct) =>
        {
            string dll;
            try { dll = LocalSilo.FindSiloDll(); }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
            var psi = LocalSilo.StartInfo(dll);
            foreach (var a in (r.GetValue(settings) ?? []).Concat(r.UnmatchedTokens)) psi.ArgumentList.Add(a);
            using var silo = Process.Start(psi) ?? throw new InvalidOperationException("could not start the silo process.");
            // Ctrl-C and SIGTERM cancel the verb's token: pass them on as SIGTERM, which the silo drains on, and wait.
            using var forward = ct.Register(() =>
            {
                if (!silo.HasExited) Process.Start("kill", ["-TERM", silo.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])?.WaitForExit();
            });
            await silo.WaitForExitAsync(CancellationToken.None);
            return silo.ExitCode;
        });
        return cmd;
    }
}
