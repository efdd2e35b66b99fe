using System.CommandLine;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Presets;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign data demo --out DIR</c> writes the shipped demo data sets as JSONL; <c>refalign data inspect --config
/// run.json [--index N]</c> shows one example exactly as the run's model sees it.
/// </summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write preferences.jsonl, references.jsonl and verifiable.jsonl into.", Required = true };
        var json = CliSupport.JsonOption();
        var demo = new Command("demo", "Write the shipped demo data (preference pairs, prompts with reference answers, questions with verifiable answers).") { output, json };
        demo.SetAction(r => CliSupport.Run(() =>
        {
            var dir = r.GetValue(output)!;
            DemoData.WriteTo(dir);
            var files = new[] { DemoData.PreferencesFileName, DemoData.ReferencesFileName, VerifiableData.FileName }.Select(f => Path.Combine(dir, f)).ToArray();
            if (r.GetValue(json))
                CliSupport.WriteJson(new { files, preferences = DemoData.Preferences.Count, references = DemoData.References.Count, verifiable = VerifiableData.Items.Count });
            else
                AnsiConsole.MarkupLineInterpolated($"[green]wrote[/] {DemoData.Preferences.Count} preference pairs, {DemoData.References.Count} prompts with references and {VerifiableData.Items.Count} questions with verifiable answers: {string.Join(", ", files)}");
            return 0;
        }));
        var data = new Command("data", "Data sets.");
        data.Subcommands.Add(demo);
        data.Subcommands.Add(Inspect());
        return data;
    }

    static Command Inspect()
    {
        var config = new Option<string>("--config") { Description = "Run config (JSON) whose data, template and truncation to apply.", Required = true };
        var index = new Option<int>("--index") { Description = "Example number among the data file's usable examples, from 0.", DefaultValueFactory = _ => 0 };
        var json = CliSupport.JsonOption();
        var cmd = new Command("inspect", "Show one example as the model sees it: templated prompt, completions, Sr-* prompted query, token ids, and what truncation removed.")
        {
            config, index, json,
        };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            var cfg = RunConfig.LoadLocal(r.GetValue(config)!).Validate();
            var view = ExampleInspection.Inspect(cfg, TextTokenizer.Load(cfg.Policy.Model), r.GetValue(index));
            if (r.GetValue(json)) CliSupport.WriteJson(view);
            else Show(view);
            return 0;
        }));
        return cmd;
    }

    static void Show(ExampleView v)
    {
        AnsiConsole.MarkupLineInterpolated($"[bold]example {v.Index}[/] ({v.Source}, {v.Split})");
        void Part(string title, string? text, int[]? ids, RemovedTokens? removed = null)
        {
            if (text is null) return;
            var body = $"{Markup.Escape(text)}\n[grey]ids ({ids?.Length ?? 0}): {string.Join(' ', ids ?? [])}[/]";
            if (removed is { Tokens: > 0 }) body += $"\n[yellow]truncation removed {removed.Tokens} tokens:[/] {Markup.Escape(removed.Text)}";
            AnsiConsole.Write(new Panel(new Markup(body)) { Header = new PanelHeader(title), Expand = true });
        }
        Part("prompt", v.PromptText, v.PromptIds, v.Truncated.Prompt);
        Part("prompted query (Sr-*)", v.PromptedText, v.PromptedIds);
        Part("chosen", v.ChosenText, v.ChosenIds, v.Truncated.Chosen);
        Part("rejected", v.RejectedText, v.RejectedIds, v.Truncated.Rejected);
        if (v.ReferenceText is not null)
            AnsiConsole.Write(new Panel(new Markup(Markup.Escape(v.ReferenceText))) { Header = new PanelHeader(v.Harmful == true ? "reference (harmful prompt)" : "reference"), Expand = true });
    }
}
