using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Tests;

/// <summary>The root appsettings.json is the one list of operator settings: complete, and the deployments use its keys.</summary>
public sealed class AppSettingsTests
{
    static IConfigurationRoot Root() => new ConfigurationBuilder()
        .AddJsonFile(Path.Combine(BuiltTools.RepositoryRoot, "appsettings.json"), optional: false)
        .Build();

    static HashSet<string> Keys(IConfiguration configuration) =>
        [.. configuration.AsEnumerable().Where(kv => kv.Value is not null).Select(kv => kv.Key)];

    [Fact]
    public void Every_silo_option_is_listed_with_its_default()
    {
        var keys = Keys(Root());
        var properties = typeof(SiloOptions).GetProperties().Select(p => $"{SiloOptions.Section}:{p.Name}");
        Assert.Empty(properties.Except(keys));
        Assert.Empty(keys.Where(k => k.StartsWith("Silo:", StringComparison.Ordinal)).Except(properties));
        // The listed values are the defaults: reading the file alone gives what reading nothing gives.
        var fromFile = SiloOptionsReader.Read(Root());
        var fromNothing = SiloOptionsReader.Read(new ConfigurationBuilder().Build());
        Assert.Equal(fromNothing with { Roles = fromFile.Roles }, fromFile);
        Assert.Equal(fromNothing.Roles, fromFile.Roles);
        Assert.Equal(OrleansSettings.Read(new ConfigurationBuilder().Build()), OrleansSettings.Read(Root()));
    }

    [Theory]
    [InlineData("infra/docker-compose.yml")]
    [InlineData("infra/k8s/40-silo-config.yaml")]
    [InlineData("infra/k8s/50-silo-workers.yaml")]
    [InlineData("infra/k8s/60-silo-learner-gpu.yaml")]
    public void Deployments_set_only_keys_of_the_root_appsettings(string file)
    {
        var keys = Keys(Root());
        var text = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, file));
        // REFALIGN_Silo__Roles: … (compose, ConfigMap) or name: REFALIGN_Silo__Roles (a container's env list).
        var used = Regex.Matches(text, @"REFALIGN_(\w+)").Select(m => m.Groups[1].Value.Replace("__", ":", StringComparison.Ordinal)).ToHashSet();
        Assert.NotEmpty(used);
        Assert.DoesNotContain(used, k => !keys.Contains(k));
    }
}
