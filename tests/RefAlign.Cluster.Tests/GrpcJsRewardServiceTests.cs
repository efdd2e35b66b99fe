using RefAlign.Compute.Rewards;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A RewardService written on another toolchain (<c>tests/interop/grpc-js/reward_server.mjs</c>: @grpc/grpc-js built from
/// <c>refalign_reward.proto</c> at run time, TLS, a key) answers the silo's caller, and its scores train a run on the
/// three-silo cluster exactly as the rule reward it reimplements would; killed with SIGKILL mid-run, it costs the run
/// failed attempts that name it, and a new process on the same address scores the rest.
/// </summary>
[Trait("Tier", "Process")]
[Collection(ClusterCollection.Name)]
public sealed class GrpcJsRewardServiceTests(ClusterFixture fixture) : IAsyncLifetime
{
    TestCertificates _certs = null!;
    GrpcJsRewardServer _server = null!;

    public async Task InitializeAsync()
    {
        Environment.SetEnvironmentVariable(RemoteRewardCallTests.KeyVariable, ExampleRewardServer.Key);
        VerifiableTask.Prepare(fixture.Root);
        _certs = new TestCertificates(Path.Combine(fixture.Root, "grpc-js-tls"), "grpc-js");
        _server = await GrpcJsRewardServer.StartAsync(_certs, ExampleRewardServer.Key);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    RewardSpec Remote() => new()
    {
        Kind = RewardKind.Remote, Url = _server.Url, ApiKeyEnv = RemoteRewardCallTests.KeyVariable, CaCertificate = _certs.CaPath,
        TimeoutSeconds = 10, Retries = 1, MinScore = -1, MaxScore = 1,
    };

    [Fact]
    public async Task The_silo_calls_a_grpc_js_reward_service_and_its_scores_train_a_run()
    {
        var batch = new RewardInputs(["What is 3 + 4?", "What is 9 - 2?", "Name a fruit."], [" 7", " 5", "An apple."], ["7", "7", "An apple."], ["7", "7", null]);
        using (var scorer = new RemoteRewardScorer(Remote(), new GrpcRewardTransport(Remote(), "grpc-js")))
            Assert.Equal([1.0, 0.0, -Math.Abs("An apple.".Length - 20) / 20.0], await scorer.ScoreAsync(batch, CancellationToken.None));
        Environment.SetEnvironmentVariable("REFALIGN_TEST_WRONG_KEY", "not-the-key");
        var wrong = Remote() with { ApiKeyEnv = "REFALIGN_TEST_WRONG_KEY", Retries = 0 };
        using (var scorer = new RemoteRewardScorer(wrong, new GrpcRewardTransport(wrong, "grpc-js")))
            Assert.Contains("Unauthenticated", (await Assert.ThrowsAsync<RemoteRewardException>(() => scorer.ScoreAsync(batch, CancellationToken.None))).Message);

        var recipe = VerifiableTask.Recipe(fixture.Root);
        var config = (recipe with
        {
            Name = "grpc-js-reward", OutputDir = Path.Combine(fixture.Root, "runs", "grpc-js-reward"), MaxSteps = 12, EvalEvery = 0, CheckpointEvery = 0,
            RefAlign = recipe.RefAlign with { Rewards = [new RewardSpec { Kind = RewardKind.Rule }, Remote()] },
        }).Validate();
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(3));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        var steps = events.Where(e => e.Kind == RunEventKind.Step).Select(e => e.Metrics).ToList();
        Assert.Equal(12, steps.Count);
        // The JavaScript service and the rule agree sample by sample, so their means agree step by step.
        Assert.All(steps, m => Assert.Equal(m["reward/rule"], m["reward/remote"], 12));
        Assert.Contains(steps, m => m["reward/remote"] > 0);
    }

    [Fact]
    public async Task A_reward_service_killed_mid_run_is_survived_as_a_lost_worker_is()
    {
        const int total = 8;
        var recipe = VerifiableTask.Recipe(fixture.Root);
        var config = (recipe with
        {
            Name = "grpc-js-killed", OutputDir = Path.Combine(fixture.Root, "runs", "grpc-js-killed"), MaxSteps = total, EvalEvery = 0, CheckpointEvery = 0,
            RefAlign = recipe.RefAlign with { Rewards = [new RewardSpec { Kind = RewardKind.Rule }, Remote() with { TimeoutSeconds = 3 }] },
            Distributed = recipe.Distributed with { MaxRestarts = 20 },
        }).Validate();
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (events, failureSeen) = await RewardServiceOutage.WatchAsync(fixture.Control, runId, _server.Url,
            () => _server.KillAsync(), async () =>
            {
                await using var killed = _server; // its exited process is released, not left to the finalizer
                _server = await killed.RestartAsync();
            });
        var summary = await fixture.Control.GetRunAsync(runId);
        Assert.True(failureSeen, "no attempt failed naming the service:\n" + RewardServiceOutage.StatusLines(events));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        var steps = events.Where(e => e.Kind == RunEventKind.Step).GroupBy(e => e.Step).Select(g => g.Last()).OrderBy(e => e.Step).ToList();
        Assert.Equal(Enumerable.Range(1, total), steps.Select(e => e.Step));
        // Every step, the ones after the kill included, was scored by a live service (never a silent zero).
        Assert.All(steps, e => Assert.Equal(e.Metrics["reward/rule"], e.Metrics["reward/remote"], 12));
    }
}
