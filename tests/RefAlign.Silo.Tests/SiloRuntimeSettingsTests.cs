using System.Text.Json.Nodes;
using RefAlign.TestSupport;

namespace RefAlign.Silo.Tests;

/// <summary>The .NET runtime settings the silo's build ships with, which the README's measured figures depend on.</summary>
public sealed class SiloRuntimeSettingsTests
{
    [Fact]
    public void The_silo_compiles_each_method_once_optimized_and_uses_server_gc()
    {
        var path = Path.ChangeExtension(BuiltTools.SiloDll, ".runtimeconfig.json");
        var settings = JsonNode.Parse(File.ReadAllText(path))!["runtimeOptions"]!["configProperties"]!;
        // No tiers: the JIT does not recompile in the background while a run's steps hold every core.
        Assert.False(settings["System.Runtime.TieredCompilation"]!.GetValue<bool>());
        // Kept for an operator who turns tiers back on (DOTNET_TieredCompilation=1): no instrumented tier, loops optimized at once.
        Assert.False(settings["System.Runtime.TieredPGO"]!.GetValue<bool>());
        Assert.False(settings["System.Runtime.TieredCompilation.QuickJitForLoops"]!.GetValue<bool>());
        Assert.True(settings["System.GC.Server"]!.GetValue<bool>());
    }
}
