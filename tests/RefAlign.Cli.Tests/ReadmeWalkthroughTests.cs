using System.Text.RegularExpressions;

namespace RefAlign.Cli.Tests;

/// <summary>
/// The README's cluster walk-through, line by line as written, in a folder that stands for a fresh clone (the
/// repository's <c>examples/</c>, nothing else). Only the ports differ: the silo gets free ones and the run verbs are
/// pointed at them.
/// </summary>
[Trait("Tier", "Process")]
public sealed class ReadmeWalkthroughTests : IDisposable
{
    readonly string _clone = Directory.CreateTempSubdirectory("refalign-readme-").FullName;

    public void Dispose() => Directory.Delete(_clone, recursive: true);

    static IReadOnlyList<string> WalkthroughLines()
    {
        var readme = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "README.md"));
        var block = Regex.Match(readme, @"<!-- walkthrough -->\s*```bash\n(.*?)```", RegexOptions.Singleline);
        Assert.True(block.Success, "README.md has no walkthrough block");
        return [.. block.Groups[1].Value.Split('\n')
            .Select(l => Regex.Replace(l, @"\s+#.*$", "").Trim())
            .Where(l => l.Length > 0)];
    }

    [Fact]
    public async Task The_readme_cluster_walkthrough_runs_as_written()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(BuiltTools.RepositoryRoot, "examples")))
            File.Copy(file, Path.Combine(Directory.CreateDirectory(Path.Combine(_clone, "examples")).FullName, Path.GetFileName(file)));

        SiloProcess? silo = null;
        string? runId = null;
        var ran = new List<string>();
        try
        {
            foreach (var line in WalkthroughLines())
            {
                Assert.StartsWith("./refalign ", line);
                var args = line["./refalign ".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
                ran.Add(line);
                if (args[0] == "silo")
                {
                    Assert.Equal("&", args[^1]);
                    silo = await SiloProcess.StartAsync("readme-silo", _clone, args.Skip(1).SkipLast(1), viaCli: true);
                    continue;
                }
                if (args[0] == "run")
                {
                    Assert.NotNull(silo);
                    args = [.. args.Select(a => a == "RUN_ID" ? runId ?? throw new InvalidOperationException("no run started yet") : a), "--silo", silo.GrpcAddress];
                }
                var r = await CliRunner.RunAsync(null, _clone, TimeSpan.FromMinutes(4), [.. args]);
                Assert.True(r.ExitCode == 0, $"`{line}` exited with {r.ExitCode}: {r.Stderr}\n{(silo is null ? "" : silo.Log())}");
                if (args is ["run", "start", ..])
                    runId = Regex.Match(r.Stdout, @"started run (\S+)").Groups[1].Value;
                if (args is ["run", "watch", ..])
                    Assert.Matches(@"run \S+ completed at step 12/12", r.Stdout);
            }
            Assert.Contains(ran, l => l.Contains("run watch", StringComparison.Ordinal));
            // The run wrote where the config said, relative to the folder the silo was started from.
            Assert.True(Directory.Exists(Path.Combine(_clone, "runs", runId!, "checkpoints")), "no checkpoints under runs/<run id>");
        }
        finally
        {
            if (silo is not null)
            {
                // SIGTERM reaches the silo through `refalign silo`, which drains and exits cleanly; the CLI passes its code on.
                Assert.Equal(0, await silo.TerminateAsync());
                await silo.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData("pythia-hh-sft.json", "pythia-hh-srdpo.json")]
    [InlineData("zephyr-conqord-sft.json", "zephyr-conqord-refalign.json")]
    public void The_two_stage_recipes_validate_and_chain_the_second_stage_to_the_first(string first, string second)
    {
        var folder = Path.Combine(BuiltTools.RepositoryRoot, "examples", "recipes");
        var sft = RefAlign.Compute.Training.RunConfig.Load(Path.Combine(folder, first)).Validate(requirePaths: false);
        var next = RefAlign.Compute.Training.RunConfig.Load(Path.Combine(folder, second)).Validate(requirePaths: false);
        Assert.True(sft.IsSft);
        Assert.Equal($"run:{sft.OutputDir}", next.Policy.Model);
        Assert.Null(next.Policy.ReferenceModel); // the reference is the SFT model too
        Assert.Contains($"examples/recipes/{first}", File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "README.md")));
    }
}
