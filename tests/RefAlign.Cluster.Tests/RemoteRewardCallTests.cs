using RefAlign.Compute.Rewards;
using RefAlign.Compute.Training;
using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// The silo's remote-reward caller against a real RewardService on a socket (TLS with a test CA, a key): the answers it
/// must refuse, each failing the call with an error that names the service after its retries, never a made-up score.
/// </summary>
public sealed class RemoteRewardCallTests : IAsyncLifetime
{
    public const string KeyVariable = "REFALIGN_TEST_REWARD_KEY";

    readonly string _root = Directory.CreateTempSubdirectory("refalign-remote-").FullName;
    TestCertificates _certs = null!;
    ExampleRewardServer _server = null!;

    static readonly RewardInputs Batch = new(["What is 3 + 4?", "What is 9 - 2?", "Name a fruit."], [" 7", " 5", "An apple."],
        ["7", "7", "An apple."], ["7", "7", null]);

    public async Task InitializeAsync()
    {
        Environment.SetEnvironmentVariable(KeyVariable, ExampleRewardServer.Key);
        _certs = new TestCertificates(Path.Combine(_root, "tls"), "reward");
        _server = await new ExampleRewardServer(_certs).StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_root, recursive: true);
    }

    RewardSpec Spec(double timeout = 5, int retries = 1) => new()
    {
        Kind = RewardKind.Remote, Url = _server.Url, ApiKeyEnv = KeyVariable, CaCertificate = _certs.CaPath,
        TimeoutSeconds = timeout, Retries = retries, BatchSize = 2, MinScore = -1, MaxScore = 1,
    };

    static RemoteRewardScorer Scorer(RewardSpec spec) => new(spec, new GrpcRewardTransport(spec, "run-under-test"));

    [Fact]
    public async Task A_batch_is_scored_over_tls_with_the_key_in_order()
    {
        using var scorer = Scorer(Spec());
        var scores = await scorer.ScoreAsync(Batch, CancellationToken.None);
        Assert.Equal([1.0, 0.0, -Math.Abs("An apple.".Length - 20) / 20.0], scores);
        Assert.Equal(2, _server.Calls); // batch_size 2: two calls
        Assert.Equal(0, scorer.Retried);
    }

    [Theory]
    [InlineData(RewardServerBehaviour.WrongCount, "answered 2 scores for 3 texts")]
    [InlineData(RewardServerBehaviour.NaN, "score 0 is NaN")]
    [InlineData(RewardServerBehaviour.OutOfRange, "outside [-1, 1]")]
    [InlineData(RewardServerBehaviour.Fail, "Unavailable")]
    [InlineData(RewardServerBehaviour.Hang, "deadline of 1 s")]
    public async Task A_wrong_answer_fails_the_call_naming_the_service_after_its_retries(RewardServerBehaviour behaviour, string reason)
    {
        _server.Behaviour = behaviour;
        using var scorer = Scorer(Spec(timeout: 1, retries: 1) with { BatchSize = 64 });
        var e = await Assert.ThrowsAsync<RemoteRewardException>(() => scorer.ScoreAsync(Batch, CancellationToken.None));
        Assert.Equal(_server.Url, e.Service);
        Assert.Contains($"remote reward service {_server.Url}", e.Message);
        Assert.Contains("2 tries failed", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.Equal(2, _server.Calls);
    }

    [Fact]
    public async Task A_wrong_key_or_an_untrusted_certificate_fails_the_call()
    {
        Environment.SetEnvironmentVariable("REFALIGN_TEST_WRONG_KEY", "not-the-key");
        using (var wrongKey = Scorer(Spec(retries: 0) with { ApiKeyEnv = "REFALIGN_TEST_WRONG_KEY" }))
            Assert.Contains("Unauthenticated", (await Assert.ThrowsAsync<RemoteRewardException>(() => wrongKey.ScoreAsync(Batch, CancellationToken.None))).Message);
        // The service's certificate does not chain to the CA the run names: no call is made at all.
        var other = new TestCertificates(Path.Combine(_root, "other"), "other");
        var calls = _server.Calls;
        using (var untrusted = Scorer(Spec(retries: 0) with { CaCertificate = other.CaPath }))
            await Assert.ThrowsAsync<RemoteRewardException>(() => untrusted.ScoreAsync(Batch, CancellationToken.None));
        Assert.Equal(calls, _server.Calls);
    }

    [Fact]
    public async Task Calls_in_flight_are_bounded_by_max_concurrency()
    {
        _server.Behaviour = RewardServerBehaviour.Slow;
        var many = new RewardInputs([.. Enumerable.Repeat("q", 8)], [.. Enumerable.Repeat("7", 8)], [.. Enumerable.Repeat("7", 8)], [.. Enumerable.Repeat<string?>("7", 8)]);
        using var scorer = Scorer(Spec(retries: 0) with { BatchSize = 1, MaxConcurrency = 2 });
        Assert.Equal(Enumerable.Repeat(1.0, 8), await scorer.ScoreAsync(many, CancellationToken.None));
        // Eight calls of one text each, never more than two at the service at once.
        Assert.Equal(8, _server.Calls);
        Assert.InRange(_server.MaxInFlight, 1, 2);
    }
}
