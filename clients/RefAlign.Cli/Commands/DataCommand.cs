using System.CommandLine;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary><c>refalign data demo --out DIR</c>: writes the shipped demo data sets as JSONL.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write preferences.jsonl and references.jsonl into.", Required = true };
        var json = CliSupport.JsonOption();
        var demo = new Command("demo", "Write the shipped demo data (preference pairs and prompts with reference answers).") { output, json };
        demo.SetAction(r => CliSupport.Run(() =>
        {
            var dir = r.GetValue(output)!;
            DemoData.WriteTo(dir);
            var files = new[] { DemoData.PreferencesFileName, DemoData.ReferencesFileName }.Select(f => Path.Combine(dir, f)).ToArray();
            if (r.GetValue(json))
                CliSupport.WriteJson(new { files, preferences = DemoData.Preferences.Count, references = DemoData.References.Count });
            else
                AnsiConsole.MarkupLineInterpolated($"[green]wrote[/] {DemoData.Preferences.Count} preference pairs and {DemoData.References.Count} prompts with references: {string.Join(", ", files)}");
            return 0;
        }));
        var data = new Command("data", "Data sets.");
        data.Subcommands.Add(demo);
        return data;
    }
}
