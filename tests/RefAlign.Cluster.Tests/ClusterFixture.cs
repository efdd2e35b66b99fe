using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Serialization;
using Orleans.TestingHost;
using RefAlign.Compute;
using RefAlign.Compute.Training.Optimization;
using RefAlign.Runtime;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Messages;
using RefAlign.Presets;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Grains;
using RefAlign.Silo.Hosting;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// Every test class here shares one cluster and runs serially: torch's default generator and intra-op thread pool are
/// process-wide, and the single-process baselines must not overlap cluster work they are compared with.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>
{
    public const string Name = "cluster";
}

/// <summary>
/// Three in-process silos with split roles, each a full RefAlign silo: its own compute executor (one thread), the
/// grains' services (<see cref="ScorerCache"/>, <see cref="IRunControl"/>), memory grain storage as default, the
/// RefAlign serializers, role metadata + <see cref="RolePlacement"/> director, and Orleans activity propagation.
/// Silo_0 (A) = learner; Silo_1 (B) = generator, reference; Silo_2 (C) = generator, scorer, reference.
/// Also writes the tiny policy, the tiny BERTScore encoder and the demo data once for all tests.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public const string SiloA = "Silo_0";
    public const string SiloB = "Silo_1";
    public const string SiloC = "Silo_2";

    public static IReadOnlyList<string> RolesOf(string siloName) => siloName switch
    {
        SiloA => [SiloRoles.Learner],
        SiloB => [SiloRoles.Generator, SiloRoles.Reference],
        SiloC => [SiloRoles.Generator, SiloRoles.Scorer, SiloRoles.Reference],
        _ => throw new ArgumentException($"unexpected silo {siloName}", nameof(siloName)),
    };

    public string Root { get; } = Directory.CreateTempSubdirectory("refalign-cluster-").FullName;

    public string PolicyDir => Path.Combine(Root, "policy");

    public string EncoderDir => Path.Combine(Root, "encoder");

    /// <summary>A second tiny policy (another seed), for runs with a separate <c>policy.reference_model</c>.</summary>
    public string ReferenceDir => Path.Combine(Root, "reference");

    public string DataDir => Path.Combine(Root, "data");

    public InProcessTestCluster Cluster { get; private set; } = null!;

    /// <summary>Grain calls the tests make the cluster lose (an outgoing call filter on every silo).</summary>
    public static LostCalls LostCalls { get; } = new();

    public IClusterClient Client => Cluster.Client;

    /// <summary>The control surface as the gRPC service sees it: resolved from a silo's services.</summary>
    public IRunControl Control => Silo(SiloC).ServiceProvider.GetRequiredService<IRunControl>();

    public InProcessSiloHandle Silo(string name) => Cluster.Silos.Single(s => s.Name == name);

    public string NameOf(SiloAddress address) => Cluster.Silos.Single(s => s.SiloAddress.Equals(address)).Name;

    public async Task InitializeAsync()
    {
        ModelPresets.Initialize(PolicyDir, "tiny", "llama", seed: 1);
        ModelPresets.Initialize(ReferenceDir, "tiny", "llama", seed: 5);
        EncoderPresets.Initialize(EncoderDir, "tiny-roberta", seed: 2);
        DemoData.WriteTo(DataDir);

        var builder = new InProcessTestClusterBuilder(3);
        builder.Options.ConfigureFileLogging = false;
        builder.ConfigureSiloHost((options, host) => host.Logging.SetMinimumLevel(LogLevel.Warning));
        builder.ConfigureSilo((options, silo) =>
        {
            var roles = RolesOf(options.SiloName);
            silo.AddMemoryGrainStorageAsDefault();
            silo.UseInMemoryReminderService();
            silo.AddRefAlignRuntime(new SiloOptions { Roles = roles, Device = "cpu", ComputeThreads = 1, SiloName = options.SiloName });
            silo.AddActivityPropagation();
            silo.AddOutgoingGrainCallFilter(LostCalls.InvokeAsync);
            var name = $"compute-{options.SiloName}";
            silo.Services.AddSingleton(_ => new ComputeExecutor("cpu", 1, name));
            // Remote configs are confined to the silo's roots: this fixture's folder is both.
            silo.Services.AddSingleton(new RunHostOptions { DataRoots = [Root], OutputRoot = Root });
            silo.Services.AddRefAlignGrains();
        });
        builder.ConfigureClientHost(host => host.Logging.SetMinimumLevel(LogLevel.Warning));
        builder.ConfigureClient(client => client.AddActivityPropagation());
        Cluster = builder.Build();
        await Cluster.DeployAsync();

        await Cluster.UntilRolesPropagateAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }

    // ---- run configs ----

    public RunConfig RefAlignConfig(string name, long seed, int steps) => new RunConfig
    {
        Name = name, Algorithm = Algorithm.RefAlign, Seed = seed, OutputDir = Path.Combine(Root, "runs", name),
        Policy = new PolicySection { Model = PolicyDir },
        Data = new DataSection { Path = Path.Combine(DataDir, DemoData.ReferencesFileName), MaxPromptLength = 48, EvalFraction = 0.1, Limit = 48 },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 1e-2, WarmupSteps = 0 },
        RefAlign = new RefAlignSection { RewardModel = EncoderDir, NumSamples = 4, MaxNewTokens = 10, TopK = 50 },
        Distributed = new DistributedSection { Mode = DistributedMode.Sync, Shards = 2 },
        BatchSize = 4, MicroBatchSize = 8, MaxSteps = steps, EvalEvery = 0, CheckpointEvery = 0,
    }.Validate();

    public RunConfig SrDpoConfig(string name, long seed, int steps) => new RunConfig
    {
        Name = name, Algorithm = Algorithm.SrDpo, Seed = seed, OutputDir = Path.Combine(Root, "runs", name),
        Policy = new PolicySection { Model = PolicyDir },
        Data = new DataSection { Path = Path.Combine(DataDir, DemoData.PreferencesFileName), MaxLength = 96, MaxPromptLength = 48, EvalFraction = 0.1, Limit = 48 },
        Optimizer = new OptimizerSection { Kind = OptimizerKind.AdamW, LearningRate = 2e-3, WarmupSteps = 1 },
        Distributed = new DistributedSection { Mode = DistributedMode.Sync, Shards = 2 },
        BatchSize = 8, MicroBatchSize = 4, MaxSteps = steps, EvalEvery = steps, EvalExamples = 8, CheckpointEvery = 0,
    }.Validate();

    // ---- cluster helpers ----

    /// <summary>Every event of a run until it ends (the watch stream completes at a terminal status).</summary>
    public async Task<(RunSummary Summary, List<RunEvent> Events)> WaitForEndAsync(string runId, TimeSpan timeout, long afterSequence = 0)
    {
        using var cts = new CancellationTokenSource(timeout);
        var events = new List<RunEvent>();
        try
        {
            await foreach (var e in Control.WatchRunAsync(runId, afterSequence, cts.Token)) events.Add(e);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            var s = await Control.GetRunAsync(runId);
            Assert.Fail($"run {runId} did not end within {timeout}: {s.Status} at step {s.Step}/{s.TotalSteps} {s.Error}");
        }
        return (await Control.GetRunAsync(runId), events);
    }

    /// <summary>The silo (by test-cluster name) that hosts the activation of <paramref name="grain"/>.</summary>
    public async Task<string> WhereIsAsync(IAddressable grain)
    {
        var address = await Client.GetGrain<IManagementGrain>(0).GetActivationAddress(grain);
        Assert.NotNull(address);
        return NameOf(address);
    }
}
