using Grpc.Core;
using RefAlign.Silo.Control;
using Server = RefAlign.Contracts.Control;

namespace RefAlign.Client.Tests;

/// <summary>Every call of the control API over real gRPC on loopback: round trips, errors, API-key authentication.</summary>
public sealed class ControlApiTests
{
    internal const string ValidConfig = """
        { "name": "api-test", "algorithm": "sr-dpo", "max_steps": 5, "optimizer": { "learning_rate": 1e-6 } }
        """;

    static readonly Dictionary<string, double> StepMetrics = new() { ["loss"] = 0.6931, ["rewards/accuracies"] = 0.75, ["tokens_per_second"] = 1234.5 };

    [Fact]
    public async Task EveryCallRoundTrips()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client();

        var id = await client.StartRunAsync(ValidConfig);
        var run = await client.GetRunAsync(id);
        AssertSame(await control.GetRunAsync(id), run);
        Assert.Equal(("api-test", "sr-dpo", RunStatus.Running, 5), (run.Name, run.Algorithm, run.Status, run.TotalSteps));
        Assert.Equal(ValidConfig, run.ConfigJson);

        control.Step(id, StepMetrics, ("reference", 0.25), ("learn", 1.5));
        run = await client.GetRunAsync(id);
        AssertSame(await control.GetRunAsync(id), run);
        Assert.Equal(1, run.Step);
        Assert.Equal(0.6931, run.LastMetrics["loss"]);

        var other = await client.StartRunAsync(ValidConfig.Replace("api-test", "second", StringComparison.Ordinal));
        var list = await client.ListRunsAsync();
        Assert.Equal([id, other], list.Select(r => r.RunId).Order(StringComparer.Ordinal));
        foreach (var r in list) AssertSame(await control.GetRunAsync(r.RunId), r);

        var stopped = await client.StopRunAsync(id);
        Assert.Equal(RunStatus.Stopped, stopped.Status);
        var resumed = await client.ResumeRunAsync(id);
        Assert.Equal(RunStatus.Running, resumed.Status);

        var cluster = await client.GetClusterAsync();
        Assert.Equal(control.Cluster.Silos.Count, cluster.Silos.Count);
        for (var i = 0; i < cluster.Silos.Count; i++)
        {
            var (a, b) = (control.Cluster.Silos[i], cluster.Silos[i]);
            Assert.Equal((a.Address, a.Name, a.Device, a.Status, a.ActiveGrains), (b.Address, b.Name, b.Device, b.Status, b.ActiveGrains));
            Assert.Equal(a.Roles, b.Roles);
        }
        Assert.Equal(control.Cluster.Generators.Select(g => new GeneratorInfo(g.GrainId, g.RunId, g.WeightVersion, g.Silo)), cluster.Generators);
        Assert.Equal(control.Cluster.Placements.Select(p => new PlacementInfo(p.Kind, p.GrainKey, p.RunId, p.Silo, p.WeightVersion)), cluster.Placements);

        control.Complete(id);
        var events = new List<RunEvent>();
        await foreach (var e in client.WatchRunAsync(id, afterSequence: 0)) events.Add(e);
        AssertSameEvents(control.Events(id), events);
        Assert.Contains(events, e => e.Kind == RunEventKind.Phase && e.Phase == "learn" && e.PhaseSeconds == 1.5);

        // A watcher that saw up to sequence 3 gets exactly the rest.
        var rest = new List<RunEvent>();
        await foreach (var e in client.WatchRunAsync(id, afterSequence: 3)) rest.Add(e);
        AssertSameEvents(control.Events(id).Skip(3).ToList(), rest);
    }

    [Theory]
    [InlineData("""{ "optimizer": { "learning_rate": -1 } }""", "optimizer.learning_rate", "field 'optimizer.learning_rate' must be > 0.")]
    [InlineData("""{ "distributed": { "shards": 0 } }""", "distributed.shards", "field 'distributed.shards' must be ≥ 1.")]
    [InlineData("""{ "optimizer": { "learnig_rate": 0.1 } }""", "optimizer.learnig_rate", "is not a known field")]
    [InlineData("""{ "batch_size": "many" }""", "batch_size", "field 'batch_size' is invalid")]
    [InlineData("   ", "config_json", "field 'config_json'")]
    public async Task BadConfigIsInvalidArgumentNamingTheField(string config, string field, string detail)
    {
        await using var silo = await TestSilo.StartAsync(new InMemoryRunControl());
        using var client = silo.Client();
        var e = await Assert.ThrowsAsync<RpcException>(() => client.StartRunAsync(config));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal(field, e.Field());
        Assert.Contains(detail, e.Status.Detail);
        Assert.Contains($"'{field}'", e.Status.Detail);
    }

    [Fact]
    public async Task UnknownRunIsNotFound()
    {
        await using var silo = await TestSilo.StartAsync(new InMemoryRunControl());
        using var client = silo.Client();
        async Task NotFound(Func<Task> call)
        {
            var e = await Assert.ThrowsAsync<RpcException>(call);
            Assert.Equal(StatusCode.NotFound, e.StatusCode);
            Assert.Equal("run 'nope' does not exist.", e.Status.Detail);
        }
        await NotFound(() => client.GetRunAsync("nope"));
        await NotFound(() => client.StopRunAsync("nope"));
        await NotFound(() => client.ResumeRunAsync("nope"));
        // NOT_FOUND is an answer, not a connection failure: the watch must not retry it.
        await NotFound(async () => { await foreach (var _ in client.WatchRunAsync("nope")) { } });

        var empty = await Assert.ThrowsAsync<RpcException>(() => client.GetRunAsync(""));
        Assert.Equal((StatusCode.InvalidArgument, "run_id"), (empty.StatusCode, empty.Field()));
    }

    [Fact]
    public async Task CancellingAWatchThrowsOperationCanceled()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client();
        var id = await client.StartRunAsync(ValidConfig);
        using var cts = new CancellationTokenSource();
        var watch = client.WatchRunAsync(id, 0, cts.Token).GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync());
        var next = watch.MoveNextAsync().AsTask(); // waits for an event that never comes
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => next.WaitAsync(TimeSpan.FromSeconds(10)));
        await watch.DisposeAsync();
        Assert.Equal(1, control.WatchCalls);
    }

    [Fact]
    public async Task WatchingTrimmedEventsIsOutOfRangeNamingTheOldestKept()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client();
        var id = await client.StartRunAsync(ValidConfig);
        for (var i = 0; i < 4; i++) control.Step(id, StepMetrics, ("learn", 0.1));
        control.KeepFrom(id, 5);

        var e = await Assert.ThrowsAsync<RpcException>(async () => { await foreach (var _ in client.WatchRunAsync(id, 0)) { } });
        Assert.Equal(StatusCode.OutOfRange, e.StatusCode);
        Assert.Equal(5, e.OldestSequence());
        Assert.Contains("from sequence 5", e.Status.Detail);
        Assert.Null(new RpcException(new Status(StatusCode.NotFound, "x")).OldestSequence());

        // From the oldest kept on, the watch works.
        control.Complete(id);
        var rest = new List<RunEvent>();
        await foreach (var ev in client.WatchRunAsync(id, 4)) rest.Add(ev);
        Assert.Equal(5, rest[0].Sequence);
    }

    [Fact]
    public async Task IdempotentCallsRetryWhileTheClusterRecoversButStartRunDoesNot()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client(configure: o => o with { WatchInitialBackoff = TimeSpan.FromMilliseconds(20) });
        var id = await client.StartRunAsync(ValidConfig);
        control.FailNextGets(3);
        Assert.Equal(id, (await client.GetRunAsync(id)).RunId);

        control.FailNextGets(100);
        var e = await Assert.ThrowsAsync<RpcException>(() => client.GetRunAsync(id));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Contains("retry", e.Status.Detail);
        control.FailNextGets(0);
    }

    [Fact]
    public async Task ResumingACompletedRunIsFailedPrecondition()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client();
        var id = await client.StartRunAsync(ValidConfig);
        control.Complete(id);
        var e = await Assert.ThrowsAsync<RpcException>(() => client.ResumeRunAsync(id));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("nothing to resume", e.Status.Detail);
    }

    [Fact]
    public async Task ApiKeyIsRequiredWhenConfigured()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control, apiKey: "s3cret-key");

        foreach (var key in new[] { null, "", "wrong", "s3cret-ke", "s3cret-key2" })
        {
            using var bad = silo.Client(key);
            var e = await Assert.ThrowsAsync<RpcException>(() => bad.ListRunsAsync());
            Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
            var w = await Assert.ThrowsAsync<RpcException>(async () => { await foreach (var _ in bad.WatchRunAsync("any")) { } });
            Assert.Equal(StatusCode.Unauthenticated, w.StatusCode);
        }

        using var good = silo.Client("s3cret-key");
        var id = await good.StartRunAsync(ValidConfig);
        Assert.Equal(id, (await good.GetRunAsync(id)).RunId);
        Assert.Single(await good.ListRunsAsync());
        Assert.Equal(2, (await good.GetClusterAsync()).Silos.Count);
    }

    [Fact]
    public void ApiKeyInterceptorComparesExactly()
    {
        Assert.True(new ApiKeyInterceptor((string?)null).IsAuthorized(null));
        Assert.True(new ApiKeyInterceptor("").IsAuthorized("anything"));
        var k = new ApiKeyInterceptor("abc");
        Assert.True(k.Enabled);
        Assert.True(k.IsAuthorized("abc"));
        Assert.False(k.IsAuthorized(null));
        Assert.False(k.IsAuthorized("ab"));
        Assert.False(k.IsAuthorized("abcd"));
        Assert.False(k.IsAuthorized("ABC"));
    }

    [Fact]
    public async Task EvaluateRun_streams_progress_then_the_result_with_every_field_and_sends_the_settings()
    {
        var control = new InMemoryRunControl();
        await using var silo = await TestSilo.StartAsync(control);
        using var client = silo.Client();
        var id = await client.StartRunAsync(ValidConfig);
        var samples = new[]
        {
            new Server.RunEvalSample(3, 0, true, "an answer", 0.8, 0.91, true, 0.87, 12),
            new Server.RunEvalSample(3, 1, false, "another", null, 0.42, false, 0.4, 7),
        };
        control.Evaluation = new Server.RunEvalResult(
            [new Server.RunModelEvaluation("base", "/m/base", new Dictionary<string, double> { ["bertscore/f1"] = 0.5 }, [], null, null, []),
             new Server.RunModelEvaluation("step-000004", "/m/step-000004", new Dictionary<string, double> { ["bertscore/f1"] = 0.665, ["calibration/ece"] = 0.1 },
                 samples, 0.42, 0.91, ["AUROC is undefined"])],
            [new Server.RunSideBySide("base", "step-000004", 0.75, 0.5, 1, 3, 0, 1)]);

        var updates = new List<RunEvalUpdate>();
        await foreach (var u in client.EvaluateRunAsync(new RunEvalRequest(id, ["base", "step-4"], Examples: 6, Seed: 9, Bootstrap: 200))) updates.Add(u);

        Assert.Equal(new Server.RunEvalRequest(id, ["base", "step-4"], 6, null, 9, 0.9, 200) with { Models = control.LastEvaluation!.Models }, control.LastEvaluation);
        Assert.Equal(["base", "step-4"], control.LastEvaluation.Models);
        Assert.Equal([(0, 1, 2), (1, 1, 2), (1, 2, 2)], updates.Select(u => (u.ModelIndex, u.Done, u.Total)));
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.Result));
        var result = updates[^1].Result!;
        Assert.Equal(2, result.Models.Count);
        var (a, b) = (result.Models[0], result.Models[1]);
        Assert.Equal(("base", "/m/base", (double?)null, (double?)null), (a.Model, a.Path, a.F1Low, a.F1High));
        Assert.Empty(a.Samples);
        Assert.Equal((0.42, 0.91), (b.F1Low!.Value, b.F1High!.Value));
        Assert.Equal(["AUROC is undefined"], b.Notes);
        Assert.Equal(0.1, b.Metrics["calibration/ece"]);
        Assert.Equal(samples.Select(s => new RunEvalSample(s.PromptId, s.Sample, s.Harmful, s.Answer, s.Confidence, s.F1, s.Correct, s.Reward, s.Length)), b.Samples);
        Assert.Equal(new RunSideBySide("base", "step-000004", 0.75, 0.5, 1, 3, 0, 1), Assert.Single(result.SideBySide));

        var missing = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in client.EvaluateRunAsync(new RunEvalRequest("nope", []))) { }
        });
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
    }

    /// <summary>The server's record as the client should see it after the wire (same fields, the client's types).</summary>
    static RunSummary AsClient(Server.RunSummary s) => new(s.RunId, s.Name, s.Algorithm, (RunStatus)(int)s.Status, s.Step, s.TotalSteps,
        s.WeightVersion, s.LatestCheckpoint, s.CreatedAt, s.Error, s.LastMetrics, s.ConfigJson);

    static RunEvent AsClient(Server.RunEvent e) => new(e.RunId, e.Sequence, (RunEventKind)(int)e.Kind, e.Step, e.Time,
        (RunStatus)(int)e.Status, e.Metrics, e.Phase, e.PhaseSeconds, e.Message);

    internal static void AssertSame(Server.RunSummary server, RunSummary actual)
    {
        var expected = AsClient(server);
        Assert.Equal(expected with { LastMetrics = actual.LastMetrics }, actual);
        Assert.Equal(expected.LastMetrics.OrderBy(kv => kv.Key), actual.LastMetrics.OrderBy(kv => kv.Key));
    }

    internal static void AssertSameEvents(IReadOnlyList<Server.RunEvent> server, IReadOnlyList<RunEvent> actual)
    {
        var expected = server.Select(AsClient).ToList();
        Assert.Equal(expected.Select(e => e.Sequence), actual.Select(e => e.Sequence));
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i] with { Metrics = actual[i].Metrics }, actual[i]);
            Assert.Equal(expected[i].Metrics.OrderBy(kv => kv.Key), actual[i].Metrics.OrderBy(kv => kv.Key));
        }
    }
}
