using System.CommandLine;
using System.Text.Json;
using RefAlign.Compute;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary>Shared pieces of the local verbs: --json, error reporting, loading a model folder.</summary>
internal static class CliSupport
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        // Scripts read this output; keep "</s>" and non-ASCII text readable instead of \u-escaped.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    public static Option<bool> JsonOption() => new("--json") { Description = "Write machine-readable JSON to stdout." };

    public static Option<string> ModelOption() => new("--model")
    {
        Description = "HF-format model folder (config.json, model.safetensors, tokenizer files).",
        Required = true,
    };

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu, cuda or cuda:N: where the models and every tensor live (a GPU needs the CUDA build or --libtorch; see docs/gpu.md).",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>The <c>--device</c> after checking this process can use it (a CPU build asked for cuda fails here, with why).</summary>
    public static TorchSharp.torch.Device Device(string name) => ComputeDevices.Resolve(name, "--device");

    public static void WriteJson<T>(T value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, Json));

    /// <summary>Runs a verb; bad input becomes one clear line on stderr and exit code 2, never a stack trace.</summary>
    public static int Run(Func<int> body) => RunAsync(() => Task.FromResult(body())).GetAwaiter().GetResult();

    /// <summary>Async form of <see cref="Run"/>.</summary>
    public static async Task<int> RunAsync(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (e is ModelFormatException or ArgumentException or IOException or UnauthorizedAccessException
                                      or InvalidRunConfigException or DeviceUnavailableException or ModelTooLargeException or NonFiniteStepException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    /// <summary>
    /// Loads libtorch from <c>--libtorch</c>, else <c>REFALIGN_LIBTORCH</c>, when either names a folder; null on success
    /// or when neither does, else exit code 2 after one line. The variable is set for child processes (the silos that
    /// <c>demo</c> and the benches start), so they load the same libtorch.
    /// </summary>
    public static int? LoadLibTorch(string? option)
    {
        var (setting, folder) = option is { Length: > 0 } ? ("--libtorch", option)
            : (TorchLoader.EnvironmentVariable, Environment.GetEnvironmentVariable(TorchLoader.EnvironmentVariable));
        if (string.IsNullOrEmpty(folder)) return null;
        try
        {
            var loaded = TorchLoader.Load(folder, setting);
            Environment.SetEnvironmentVariable(TorchLoader.EnvironmentVariable, loaded.Folder);
            return null;
        }
        catch (LibTorchLoadException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    public static (CausalLm Model, TextTokenizer Tokenizer) Load(string folder, string device = "cpu")
    {
        var target = Device(device);
        if (!Directory.Exists(folder)) throw new ModelFormatException($"model folder '{folder}' does not exist.");
        var tokenizer = TextTokenizer.Load(folder);
        var model = CausalLm.FromPretrained(folder, device: target);
        if (tokenizer.VocabSize > model.Config.VocabSize)
            throw new ModelFormatException(
                $"{Path.Combine(folder, "config.json")}: field 'vocab_size' ({model.Config.VocabSize}) is smaller than the tokenizer's vocabulary ({tokenizer.VocabSize}).");
        return (model, tokenizer);
    }

    public static IReadOnlyList<int> EosIds(CausalLm model, TextTokenizer tok) =>
        PolicySetup.SpecialIds(tok, model).Eos;

    public static int PadId(CausalLm model, TextTokenizer tok) =>
        PolicySetup.SpecialIds(tok, model).Pad;

    /// <summary>
    /// Announces a phase on stderr. Deliberately not an animated spinner: its refresh thread competes with libtorch's
    /// OpenMP workers on small machines and was measured to slow a training step five-fold on 2 cores.
    /// </summary>
    public static void Status(bool quiet, string message, Action work)
    {
        if (!quiet) Console.Error.WriteLine($"{message}…");
        work();
    }
}
