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
        // The Silo: section holds the silo's options and its security settings (SecuritySettings reads those).
        string[] security = ["Silo:ListenIP", "Silo:AllowAnonymous", "Silo:ApiKey", "Silo:Tls:CertificatePath", "Silo:Tls:KeyPath", "Silo:Tls:CaPath"];
        // Dashboard settings nest as Silo:Dashboard:Enabled and :Port, as the Orleans Dashboard's own docs spell them.
        // Timings have their own section (Timing:), read into SiloOptions.Timings.
        var properties = typeof(SiloOptions).GetProperties().Where(p => p.Name != nameof(SiloOptions.Timings))
            .Select(p => p.Name.StartsWith("Dashboard", StringComparison.Ordinal) ? $"{SiloOptions.Section}:Dashboard:{p.Name["Dashboard".Length..]}" : $"{SiloOptions.Section}:{p.Name}")
            .Concat(security).ToList();
        Assert.Empty(properties.Except(keys));
        Assert.Empty(keys.Where(k => k.StartsWith("Silo:", StringComparison.Ordinal)).Except(properties));
        var limits = typeof(RefAlign.Grains.RunLimits).GetProperties().Select(p => $"Limits:{p.Name}").ToList();
        Assert.Equal(limits.Order(), keys.Where(k => k.StartsWith("Limits:", StringComparison.Ordinal)).Order());
        Assert.Equal(new RefAlign.Grains.RunLimits(), LimitsReader.Read(Root()));
        // Every settable timing is listed, with its default (derived ones are not settings).
        var timings = typeof(RefAlign.Grains.RunTimings).GetProperties().Where(p => p.CanWrite).Select(p => $"Timing:{p.Name}").ToList();
        Assert.Equal(timings.Order(), keys.Where(k => k.StartsWith("Timing:", StringComparison.Ordinal)).Order());
        Assert.Equal(new RefAlign.Grains.RunTimings(), TimingsReader.Read(Root()));
        Assert.Equal(SecuritySettings.Read(new ConfigurationBuilder().Build()) with { ApiKeys = [] }, SecuritySettings.Read(Root()) with { ApiKeys = [] });
        // The listed values are the defaults: reading the file alone gives what reading nothing gives.
        var fromFile = SiloOptionsReader.Read(Root());
        var fromNothing = SiloOptionsReader.Read(new ConfigurationBuilder().Build());
        Assert.Equal(fromNothing with { Roles = fromFile.Roles, DataRoots = fromFile.DataRoots }, fromFile);
        Assert.Equal(fromNothing.Roles, fromFile.Roles);
        Assert.Equal(fromNothing.DataRoots, fromFile.DataRoots);
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
        // REFALIGN_Silo__Roles: … (compose, ConfigMap) or name: REFALIGN_Silo__Roles (a container's env list); compose's
        // own variables (${REFALIGN_API_KEY}) have no section.
        var used = Regex.Matches(text, @"REFALIGN_([A-Za-z]+__\w+)").Select(m => m.Groups[1].Value.Replace("__", ":", StringComparison.Ordinal)).ToHashSet();
        // Keys with roles are a list (Silo:ApiKeys:N:Key|KeyFile|Role), documented beside Silo:ApiKey.
        var listed = used.RemoveWhere(k => Regex.IsMatch(k, @"^Silo:ApiKeys:\d+:(Key|KeyFile|Role)$"));
        if (listed > 0) Assert.Contains("Silo:ApiKeys:N:Key|KeyFile and :Role", File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "appsettings.json")));
        Assert.NotEmpty(used);
        Assert.DoesNotContain(used, k => !keys.Contains(k));
    }

    static TimeSpan Setting(string text, string key) =>
        TimeSpan.Parse(Regex.Match(text, $@"REFALIGN_{key.Replace(":", "__", StringComparison.Ordinal)}:\s*""?([0-9:.]+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void Deployments_wait_longer_than_a_silo_s_drain_before_they_kill_it()
    {
        // A silo's drain: Silo:ShutdownGracePeriod for compute and learner checkpoints, plus 30 s for Orleans to leave.
        var compose = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "infra/docker-compose.yml"));
        var drain = Setting(compose, "Silo:ShutdownGracePeriod") + TimeSpan.FromSeconds(30);
        var stop = TimeSpan.FromSeconds(int.Parse(Regex.Match(compose, @"stop_grace_period:\s*(\d+)s").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(stop > drain, $"compose stop_grace_period {stop} ≤ drain {drain}");

        var config = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "infra/k8s/40-silo-config.yaml"));
        var k8sDrain = Setting(config, "Silo:ShutdownGracePeriod") + TimeSpan.FromSeconds(30);
        foreach (var file in new[] { "infra/k8s/50-silo-workers.yaml", "infra/k8s/60-silo-learner-gpu.yaml" })
        {
            var text = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, file));
            var grace = TimeSpan.FromSeconds(int.Parse(Regex.Match(text, @"terminationGracePeriodSeconds:\s*(\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(grace > k8sDrain, $"{file}: terminationGracePeriodSeconds {grace} ≤ drain {k8sDrain}");
            Assert.Contains("claimName: refalign-data", text);
        }
        // Every learner silo reaches the same checkpoints.
        Assert.Contains("REFALIGN_Silo__CheckpointRoot: /data/checkpoints", config);
        Assert.Contains("REFALIGN_Silo__CheckpointRoot: /data/checkpoints", compose);
    }
}
