using RefAlign.Cli.Commands.Bench;

namespace RefAlign.Cli.Tests;

/// <summary>docs/benchmarks.md is generated: it is exactly what <c>bench report</c> renders from the kept result files.</summary>
public sealed class BenchReportTests
{
    [Fact]
    public void The_benchmark_page_is_the_rendering_of_the_kept_result_files()
    {
        var docs = Path.Combine(BuiltTools.RepositoryRoot, "docs");
        var results = Path.Combine(docs, "bench-results");
        Assert.NotEmpty(Directory.GetFiles(results, "*.json"));
        var page = BenchReport.Render(results);
        // Every kept suite has its section, and every ratio with a goal shows it.
        Assert.Contains("## `bench cluster`", page);
        Assert.Contains("| `ratios.pipelined_speedup` | ≥ 1.3 |", page);
        Assert.True(File.ReadAllText(Path.Combine(docs, "benchmarks.md")) == page,
            "docs/benchmarks.md differs from the rendering of docs/bench-results: run ./refalign bench report --page docs/benchmarks.md");
    }
}
