using System.CommandLine;
using RefAlign.Compute;
using RefAlign.Presets;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary><c>refalign model init</c>: writes a complete HF-format model folder with random weights.</summary>
internal static class ModelCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = "Decoder: tiny or small. BERTScore encoder: tiny-bert, tiny-roberta, tiny-bart, small-bert, small-roberta, small-bart.",
            DefaultValueFactory = _ => "tiny",
        };
        preset.AcceptOnlyFromAmong([.. ModelPresets.Names, .. EncoderPresets.Names]);
        var arch = new Option<string>("--arch") { Description = "Decoder architecture: llama, mistral, qwen2 or gpt-neox (Pythia-style GPTNeoXForCausalLM).", DefaultValueFactory = _ => "llama" };
        arch.AcceptOnlyFromAmong([.. ModelPresets.Architectures]);
        var output = new Option<string>("--out") { Description = "Folder to write.", Required = true };
        var seed = new Option<long>("--seed") { Description = "Seed of the random weights.", DefaultValueFactory = _ => 0 };
        var json = CliSupport.JsonOption();
        var init = new Command("init", "Write an HF-format model folder (config, safetensors, tokenizer) with random weights.")
        {
            preset, arch, output, seed, json,
        };
        init.SetAction(r => CliSupport.Run(() =>
        {
            TorchLoader.RequireLibTorch("--libtorch");
            var dir = r.GetValue(output)!;
            var name = r.GetValue(preset)!;
            (string Architecture, int Layers, int Hidden, int Vocab) info = default;
            CliSupport.Status(r.GetValue(json), $"Writing {name} model to {dir}", () =>
            {
                if (EncoderPresets.Names.Contains(name))
                {
                    var e = EncoderPresets.Initialize(dir, name, r.GetValue(seed));
                    info = (e.Architecture, e.NumHiddenLayers, e.HiddenSize, e.VocabSize);
                }
                else
                {
                    var d = ModelPresets.Initialize(dir, name, r.GetValue(arch)!, r.GetValue(seed));
                    info = (d.Architecture, d.NumHiddenLayers, d.HiddenSize, d.VocabSize);
                }
            });
            var files = Directory.GetFiles(dir).Select(Path.GetFileName).Order().ToArray();
            if (r.GetValue(json))
                CliSupport.WriteJson(new { folder = Path.GetFullPath(dir), architecture = info.Architecture, vocab_size = info.Vocab,
                    hidden_size = info.Hidden, num_hidden_layers = info.Layers, files });
            else
                AnsiConsole.MarkupLineInterpolated(
                    $"[green]wrote[/] {info.Architecture} ({info.Layers} layers, hidden {info.Hidden}, vocab {info.Vocab}) to {dir}: {string.Join(", ", files)}");
            return 0;
        }));
        var model = new Command("model", "Model folders.");
        model.Subcommands.Add(init);
        return model;
    }
}
