using System.CommandLine;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary><c>refalign cluster status</c>: silos, roles, devices, active grains, and which silo holds each running run's grains.</summary>
internal static class ClusterCommand
{
    public static Command Create()
    {
        var silo = RemoteSupport.SiloOption();
        var apiKey = RemoteSupport.ApiKeyOption();
        var json = CliSupport.JsonOption();
        var status = new Command("status", "Show the cluster's silos and where each running run's grains live.") { json };
        status.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var c = await client.GetClusterAsync(ct);
            var names = c.Silos.ToDictionary(s => s.Address, s => s.Name, StringComparer.Ordinal);
            string NameOf(string address) => names.GetValueOrDefault(address, address);
            if (r.GetValue(json))
            {
                CliSupport.WriteJson(new
                {
                    silos = c.Silos.Select(s => new { s.Address, s.Name, s.Roles, s.Device, s.Libtorch, s.Status, s.ActiveGrains }),
                    generators = c.Generators.Select(g => new { g.GrainId, g.RunId, g.WeightVersion, g.Silo, SiloName = NameOf(g.Silo) }),
                    placements = c.Placements.Select(p => new { p.Kind, p.GrainKey, p.RunId, p.Silo, SiloName = NameOf(p.Silo), p.WeightVersion }),
                });
                return 0;
            }
            var silos = new Table().Title("silos").AddColumns("name", "address", "roles", "device", "libtorch", "status", "active grains");
            foreach (var s in c.Silos)
                silos.AddRow(Markup.Escape(s.Name), Markup.Escape(s.Address), Markup.Escape(string.Join(", ", s.Roles)),
                    Markup.Escape(s.Device), Markup.Escape(s.Libtorch), Markup.Escape(s.Status), s.ActiveGrains.ToString());
            AnsiConsole.Write(silos);
            if (c.Placements.Count == 0)
            {
                Console.WriteLine("no run is running.");
                return 0;
            }
            var grains = new Table().Title("running runs: where their grains live").AddColumns("run", "grain", "key", "silo", "weights");
            foreach (var p in c.Placements.OrderBy(p => p.RunId, StringComparer.Ordinal).ThenBy(p => p.GrainKey, StringComparer.Ordinal))
                grains.AddRow(Markup.Escape(p.RunId), p.Kind, Markup.Escape(p.GrainKey), Markup.Escape(NameOf(p.Silo)), p.WeightVersion < 0 ? "" : $"v{p.WeightVersion}");
            AnsiConsole.Write(grains);
            return 0;
        }));
        var cluster = new Command("cluster", "Inspect the cluster (gRPC control API).") { silo, apiKey, RemoteSupport.CaCert };
        cluster.Subcommands.Add(status);
        return cluster;
    }
}
