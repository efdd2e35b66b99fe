using Orleans.Serialization;
using RefAlign.Contracts.Messages;
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.TestingHost;
using RefAlign.Runtime;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Tests;

/// <summary>Three in-process silos: Silo_0 = generator+scorer (cpu), Silo_1 = learner+reference (cpu), Silo_2 = learner (cuda:0).</summary>
public sealed class RoleClusterFixture : IAsyncLifetime
{
    public InProcessTestCluster Cluster { get; private set; } = null!;

    internal static SiloOptions OptionsFor(string siloName) => siloName switch
    {
        "Silo_0" => new SiloOptions { Roles = [SiloRoles.Generator, SiloRoles.Scorer], Device = "cpu" },
        "Silo_1" => new SiloOptions { Roles = [SiloRoles.Learner, SiloRoles.Reference], Device = "cpu" },
        _ => new SiloOptions { Roles = [SiloRoles.Learner], Device = "cuda:0" },
    };

    public SiloAddress Silo(string name) => Cluster.Silos.Single(s => s.Name == name).SiloAddress;

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(3);
        builder.ConfigureSilo((options, silo) => silo.AddRefAlignRuntime(OptionsFor(options.SiloName)));
        Cluster = builder.Build();
        await Cluster.DeployAsync();

        await Cluster.UntilRolesPropagateAsync();
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

public sealed class PlacementTests(RoleClusterFixture fixture) : IClassFixture<RoleClusterFixture>
{
    private async Task<string[]> PlaceAsync<T>(int count) where T : IPlacementProbeGrain =>
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => fixture.Cluster.Client.GetGrain<T>(i).WhereAsync()));

    [Fact]
    public async Task Learner_grains_go_to_the_learner_silo_with_an_accelerator()
    {
        var placed = await PlaceAsync<ILearnerProbeGrain>(12);
        Assert.All(placed, s => Assert.Equal(fixture.Silo("Silo_2").ToString(), s));
    }

    [Fact]
    public async Task Generator_and_reference_grains_go_to_silos_with_those_roles()
    {
        Assert.All(await PlaceAsync<IGeneratorProbeGrain>(12), s => Assert.Equal(fixture.Silo("Silo_0").ToString(), s));
        Assert.All(await PlaceAsync<IReferenceProbeGrain>(12), s => Assert.Equal(fixture.Silo("Silo_1").ToString(), s));
    }

    [Fact]
    public async Task A_role_no_silo_has_falls_back_to_any_silo()
    {
        var silos = fixture.Cluster.Silos.Select(s => s.SiloAddress.ToString()).ToHashSet();
        Assert.All(await PlaceAsync<IOrphanProbeGrain>(8), s => Assert.Contains(s, silos));
    }

    [Fact]
    public void Director_rule_prefers_role_then_accelerator_and_reports_fallback()
    {
        static RolePlacementDirector.Candidate Silo(int port, string roles, string device) => new(
            SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), 1),
            new Dictionary<string, string> { [SiloMetadataKeys.Roles] = roles, [SiloMetadataKeys.Device] = device });
        var cpuLearner = Silo(1, "learner,reference", "cpu");
        var gpuLearner = Silo(2, "learner", "cuda:0");
        var generator = Silo(3, "generator", "cpu");
        RolePlacementDirector.Candidate[] all = [cpuLearner, gpuLearner, generator];
        var random = new Random(1);

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(gpuLearner.Silo, RolePlacementDirector.Choose("learner", true, all, random, out var fellBack));
            Assert.False(fellBack);
            Assert.Contains(RolePlacementDirector.Choose("learner", false, all, random, out _), new[] { cpuLearner.Silo, gpuLearner.Silo });
            Assert.Equal(generator.Silo, RolePlacementDirector.Choose("generator", true, all, random, out _));
        }

        // Only cpu learners: the preference does not exclude them.
        Assert.Equal(cpuLearner.Silo, RolePlacementDirector.Choose("learner", true, [cpuLearner, generator], random, out _));
        Assert.Contains(RolePlacementDirector.Choose("scorer", false, all, random, out var fallback), all.Select(c => c.Silo));
        Assert.True(fallback);

        // Silo:LearnerRequiresAccelerator: a GPU learner silo only; with none active the learner waits, never goes to a CPU one.
        Assert.Equal(gpuLearner.Silo, RolePlacementDirector.Choose("learner", false, all, random, out _, learnerRequiresAccelerator: true));
        var waits = Assert.Throws<NoSiloForRoleException>(() =>
            RolePlacementDirector.Choose("learner", true, [cpuLearner, generator], random, out _, learnerRequiresAccelerator: true));
        Assert.Contains("no active learner silo has an accelerator", waits.Message);
        Assert.Contains("the run waits for it", waits.Message);
        Assert.Equal(generator.Silo, RolePlacementDirector.Choose("generator", false, [cpuLearner, generator], random, out _, learnerRequiresAccelerator: true));
    }
}
