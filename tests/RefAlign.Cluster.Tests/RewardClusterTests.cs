using Orleans.Runtime;
using RefAlign.Compute;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Presets;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// Rewards on the three-silo cluster (docs/algorithms.md §9): a reward model scored on the scorer silo and a remote
/// service called from the run's silo give the single-process trainer's numbers; a service that goes away mid-run is
/// survived as a lost worker is; a hung one fails its run by its deadline, naming it, while another run trains; and the
/// verifiable demo recipe raises held-out accuracy on the cluster.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class RewardClusterTests(ClusterFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    TestCertificates _certs = null!;
    ExampleRewardServer _server = null!;

    public async Task InitializeAsync()
    {
        Environment.SetEnvironmentVariable(RemoteRewardCallTests.KeyVariable, ExampleRewardServer.Key);
        VerifiableTask.Prepare(fixture.Root);
        // Inside the silos' data roots: a run's CA file is confined like its other inputs.
        _certs = new TestCertificates(Path.Combine(fixture.Root, "reward-tls"), "reward");
        _server = await new ExampleRewardServer(_certs).StartAsync();
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    RunConfig Small(string name, params RewardSpec[] rewards)
    {
        var recipe = VerifiableTask.Recipe(fixture.Root);
        return (recipe with
        {
            Name = name, OutputDir = Path.Combine(fixture.Root, "runs", name), MaxSteps = 4, EvalEvery = 0, CheckpointEvery = 0, BatchSize = 4,
            RefAlign = recipe.RefAlign with { NumSamples = 4, MaxNewTokens = 3, Rewards = rewards },
            PolicyGradient = recipe.PolicyGradient with { KlCoef = 0.05 },
        }).Validate();
    }

    RewardSpec Remote(double timeout = 5, int retries = 1) => new()
    {
        Kind = RewardKind.Remote, Url = _server.Url, ApiKeyEnv = RemoteRewardCallTests.KeyVariable, CaCertificate = _certs.CaPath,
        TimeoutSeconds = timeout, Retries = retries, MinScore = -1, MaxScore = 1,
    };

    static List<IReadOnlyDictionary<string, double>> Steps(IEnumerable<RunEvent> events) =>
        [.. events.Where(e => e.Kind == RunEventKind.Step).OrderBy(e => e.Step).Select(e => e.Metrics)];

    void AssertClose(IReadOnlyList<double> local, IReadOnlyList<double> cluster, string what)
    {
        Assert.Equal(local.Count, cluster.Count);
        output.WriteLine($"{what}: max |local - cluster| = {local.Zip(cluster).Max(p => Math.Abs(p.First - p.Second)):E2}");
        Assert.All(local.Zip(cluster), p => Assert.True(Math.Abs(p.First - p.Second) <= 1e-4, $"{what}: local {p.First:R}, cluster {p.Second:R}"));
    }

    static RunRecorder Locally(RunConfig config)
    {
        var tok = TextTokenizer.Load(config.Policy.Model);
        var data = TrainingData.Load(config, tok);
        using var services = new LocalTrainingServices(config, tok, data, remote: spec => new GrpcRewardTransport(spec, "local"));
        var recorder = new RunRecorder();
        new TrainingRun(config.Name, config, data, services, recorder).RunAsync().GetAwaiter().GetResult();
        return recorder;
    }

    [Fact]
    public async Task A_reward_model_on_the_scorer_silo_and_a_remote_service_give_the_single_process_numbers()
    {
        var rm = Path.Combine(fixture.Root, "reward-model");
        if (!Directory.Exists(rm)) RewardModelPresets.Initialize(rm, "qwen2", seed: 6);
        var config = Small("rm-remote", new RewardSpec { Kind = RewardKind.RewardModel, Model = rm, Weight = 2 }, Remote(), new RewardSpec { Kind = RewardKind.Rule });
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(3));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        var calls = _server.Calls;
        Assert.True(calls >= 4, $"the service answered {calls} calls"); // one per step at least (64 texts per call)

        var local = Locally(config with { OutputDir = Path.Combine(fixture.Root, "local", "rm-remote") });
        var cluster = Steps(events);
        foreach (var key in new[] { "loss", "reward/reward_model", "reward/remote", "reward/rule", "reward/total", "grad_norm" })
            AssertClose([.. local.Steps.Select(s => s.Metrics[key])], [.. cluster.Select(m => m[key])], key);
        Assert.All(cluster, m => Assert.Equal((2 * m["reward/reward_model"] + m["reward/remote"] + m["reward/rule"]) / 4, m["reward/total"], 10));

        // The reward model ran on the scorer silo (C), BERTScore's place.
        var stats = await fixture.Client.GetGrain<IManagementGrain>(0).GetDetailedGrainStatistics();
        var scorers = stats.Where(s => s.GrainType.Contains(nameof(RewardScorerGrain), StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(scorers);
        Assert.All(scorers, s => Assert.Equal(ClusterFixture.SiloC, fixture.NameOf(s.SiloAddress)));
    }

    [Fact]
    public async Task Reward_inputs_outside_the_silos_roots_or_a_keyless_service_are_refused_at_start_naming_the_field()
    {
        async Task<string> Refused(params RewardSpec[] rewards)
        {
            var recipe = VerifiableTask.Recipe(fixture.Root);
            var config = recipe with { Name = "refused", OutputDir = Path.Combine(fixture.Root, "runs", "refused"), RefAlign = recipe.RefAlign with { Rewards = rewards } };
            return (await Assert.ThrowsAsync<InvalidRunConfigException>(() => fixture.Control.StartRunAsync(config.ToJson()))).Field;
        }
        // A remote caller may not make the silo read its files as a model or a certificate.
        Assert.Equal("refalign.rewards[0].model", await Refused(new RewardSpec { Kind = RewardKind.RewardModel, Model = "/etc" }));
        Assert.Equal("refalign.rewards[0].ca_certificate", await Refused(Remote() with { CaCertificate = "/etc/hostname" }));
        Assert.Equal("refalign.rewards[0].url", await Refused(Remote() with { Url = "http://192.0.2.1:50051" }));
        Assert.Equal("refalign.rewards[0].api_key_env", await Refused(Remote() with { ApiKeyEnv = "REFALIGN_TEST_UNSET_KEY" }));
        Assert.Equal("refalign.rewards[0].pattern", await Refused(new RewardSpec { Kind = RewardKind.Rule, Pattern = "(a+)+\\1" }));
        Assert.Equal("refalign.rewards", await Refused(new RewardSpec { Kind = RewardKind.Rule, Weight = 1 }, new RewardSpec { Kind = RewardKind.Rule, Weight = -1 }));
    }

    [Fact]
    public async Task A_reward_service_that_goes_away_mid_run_is_survived_as_a_lost_worker_is()
    {
        var config = Small("remote-gone", Remote(timeout: 3, retries: 1)) with { MaxSteps = 8 };
        config = config with { Distributed = config.Distributed with { MaxRestarts = 20 } };
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        // Stopped, the service's port refuses connections; started again, it is back on the same address.
        var (events, failureSeen) = await RewardServiceOutage.WatchAsync(fixture.Control, runId, _server.Url,
            () => _server.StopAsync(), async () => await _server.StartAsync());
        var summary = await fixture.Control.GetRunAsync(runId);
        Assert.True(failureSeen, "no attempt failed naming the service:\n" + RewardServiceOutage.StatusLines(events));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        Assert.Equal(8, summary.Step);
        Assert.Equal(Enumerable.Range(1, 8), events.Where(e => e.Kind == RunEventKind.Step).Select(e => e.Step).Distinct().Order());
    }

    [Fact]
    public async Task A_hung_service_fails_its_run_by_the_deadline_naming_it_while_another_run_trains()
    {
        _server.Behaviour = RewardServerBehaviour.Hang;
        var hung = Small("remote-hung", Remote(timeout: 1, retries: 1));
        hung = hung with { Distributed = hung.Distributed with { MaxRestarts = 0 } };
        var other = Small("rule-beside", new RewardSpec { Kind = RewardKind.Rule }) with { MaxSteps = 6 };
        var hungId = await fixture.Control.StartRunAsync(hung.ToJson());
        var otherId = await fixture.Control.StartRunAsync(other.ToJson());
        var (h, _) = await fixture.WaitForEndAsync(hungId, TimeSpan.FromMinutes(3));
        var (o, _) = await fixture.WaitForEndAsync(otherId, TimeSpan.FromMinutes(3));
        Assert.Equal(RunStatus.Failed, h.Status);
        Assert.Contains($"remote reward service {_server.Url}", h.Error);
        Assert.Contains("deadline", h.Error);
        Assert.True(o.Status == RunStatus.Completed, $"{o.Status}: {o.Error}");
        Assert.Equal(6, o.Step);
    }

    [Fact]
    public async Task The_verifiable_recipe_raises_held_out_accuracy_on_the_cluster()
    {
        var recipe = VerifiableTask.Recipe(fixture.Root) with { OutputDir = Path.Combine(fixture.Root, "runs", "verifiable") };
        var runId = await fixture.Control.StartRunAsync(recipe.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(10));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        var before = VerifiableTask.HeldOutAccuracy(recipe, recipe.Policy.Model, Path.Combine(fixture.Root, "eval", "before"));
        var after = VerifiableTask.HeldOutAccuracy(recipe, summary.LatestCheckpoint!, Path.Combine(fixture.Root, "eval", "after"));
        output.WriteLine($"held-out accuracy {before:F3} → {after:F3}; periodic eval {string.Join(", ", events.Where(e => e.Kind == RunEventKind.Eval).Select(e => e.Metrics["eval/accuracy"].ToString("F3")))}");
        Assert.True(before < 0.02 && after >= 0.05 && after >= 4 * before, $"held-out accuracy {before:F3} → {after:F3}");
    }
}
