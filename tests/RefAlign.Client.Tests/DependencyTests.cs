using System.Text.Json.Nodes;

namespace RefAlign.Client.Tests;

/// <summary>The layering, as the restore graphs show it: a trainer's client program never needs libtorch or Orleans.</summary>
public sealed class DependencyTests
{
    /// <summary>Every package and project in <paramref name="project"/>'s restore graph, transitive ones included.</summary>
    static IReadOnlyList<string> Closure(string project)
    {
        var assets = Path.Combine(BuiltTools.RepositoryRoot, project, "obj", "project.assets.json");
        var libraries = JsonNode.Parse(File.ReadAllText(assets))!["libraries"]!.AsObject();
        return [.. libraries.Select(l => l.Key.Split('/')[0])];
    }

    [Theory]
    [InlineData("clients/RefAlign.Client")]
    [InlineData("grains/RefAlign.Contracts")]
    public void Neither_the_client_nor_the_contracts_pull_in_TorchSharp_or_the_compute_layer(string project)
    {
        var closure = Closure(project);
        Assert.NotEmpty(closure);
        Assert.DoesNotContain(closure, p => p.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase) || p.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(closure, p => p.StartsWith("RefAlign.", StringComparison.Ordinal) && p != "RefAlign.Contracts");
    }

    [Fact]
    public void The_client_depends_on_grpc_only()
    {
        var closure = Closure("clients/RefAlign.Client");
        Assert.Contains("Grpc.Net.Client", closure);
        Assert.DoesNotContain(closure, p => p.StartsWith("Microsoft.Orleans", StringComparison.Ordinal));
    }

    [Fact]
    public void The_compute_layer_knows_no_orleans_grpc_or_exporters()
    {
        var closure = Closure("grains/RefAlign.Compute");
        Assert.Contains("TorchSharp", closure);
        Assert.DoesNotContain(closure, p => p.StartsWith("Microsoft.Orleans", StringComparison.Ordinal)
            || p.StartsWith("Grpc", StringComparison.Ordinal) || p.StartsWith("OpenTelemetry.Exporter", StringComparison.Ordinal));
    }
}
