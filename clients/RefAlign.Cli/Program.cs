using System.CommandLine;
using RefAlign.Cli.Commands;
using RefAlign.Compute;

var root = new RootCommand("RefAlign.Orleans: alignment training (RefAlign, Sr-DPO/Sr-IPO) on an Orleans cluster.");
var libtorch = new Option<string?>("--libtorch")
{
    Description = $"Load libtorch (libtorch_cpu.so or libtorch_cuda.so, and libLibTorchSharp.so) from this folder, e.g. a PyTorch install's lib/ (env {TorchLoader.EnvironmentVariable}; docs/gpu.md).",
    Recursive = true,
};
root.Options.Add(libtorch);
root.Subcommands.Add(ModelCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(LogProbsCommand.Create());
root.Subcommands.Add(RefAlign.Cli.Commands.Bench.BenchSupport.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BertScoreCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(DataCommand.Create());
root.Subcommands.Add(RunCommands.Create());
root.Subcommands.Add(ArtifactCommand.Create());
root.Subcommands.Add(ClusterCommand.Create());
root.Subcommands.Add(SiloCommand.Create());
var parsed = root.Parse(args);
// Before any verb touches TorchSharp: once it has bound its native backend, a folder can no longer take effect.
if (CliSupport.LoadLibTorch(parsed.GetValue(libtorch)) is { } failure) return failure;
// Ctrl-C cancels the running verb's token (train checkpoints and stops; watch detaches) instead of killing the process.
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
