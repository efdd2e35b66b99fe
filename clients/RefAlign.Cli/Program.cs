using System.CommandLine;
using RefAlign.Cli.Commands;

var root = new RootCommand("RefAlign.Orleans: alignment training (RefAlign, Sr-DPO/Sr-IPO) on an Orleans cluster.");
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
// Ctrl-C cancels the running verb's token (train checkpoints and stops; watch detaches) instead of killing the process.
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
