namespace RefAlign.Cli.Tests;

/// <summary>A run's event log is bounded on the silo; a watch that asks for more than it keeps is told, and follows on.</summary>
[Trait("Tier", "Process")]
public sealed class EventLogTests
{
    [Fact]
    public async Task A_watch_from_the_start_of_a_trimmed_log_follows_from_the_oldest_kept_event()
    {
        using var workspace = new DemoWorkspace("refalign-cli-eventlog-");
        await using var silo = await SiloProcess.StartAsync("eventlog-silo", workspace.Root, ["--Silo:EventLogCapacity=16"]);
        string[] at = ["--silo", silo.GrpcAddress];
        var start = await CliRunner.RunAsync(["run", "start", "--config", TinyRuns.Write(workspace.Root, TinyRuns.RefAlign("log", steps: 5)), "--json", .. at]);
        Assert.True(start.ExitCode == 0, start.Stderr);
        var id = start.Json["run_id"]!.GetValue<string>();

        // Watched live from the start, nothing is trimmed yet: every event arrives, in order, without gaps.
        var live = await CliRunner.RunAsync(["run", "watch", id, "--json", .. at]);
        Assert.True(live.ExitCode == 0, live.Stderr);
        var all = live.JsonLines.Select(e => e["sequence"]!.GetValue<long>()).ToList();
        Assert.True(all.Count > 16, $"only {all.Count} events; the log would not be trimmed");
        Assert.Equal(Enumerable.Range(1, all.Count).Select(i => (long)i), all);

        // Afterwards the silo keeps the newest 16: a watch from the start says so and follows from the oldest kept.
        var late = await CliRunner.RunAsync(["run", "watch", id, "--json", .. at]);
        Assert.True(late.ExitCode == 0, late.Stderr);
        var oldest = all[^1] - 15;
        Assert.Contains($"events before #{oldest} of run {id} are no longer kept; following from #{oldest}.", late.Stderr);
        Assert.Equal(all.Skip(all.Count - 16), late.JsonLines.Select(e => e["sequence"]!.GetValue<long>()));
        Assert.Equal("completed", late.JsonLines[^1]["status"]!.GetValue<string>());
    }
}
