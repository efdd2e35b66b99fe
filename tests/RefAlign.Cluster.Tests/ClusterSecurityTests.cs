using System.Net;
using System.Net.Sockets;
using RefAlign.Client;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A secured cluster of real silo processes: Redis with a password, mutual TLS between silos and on the gateway from one
/// certificate, the control API over TLS. A silo with another certificate cannot join; plain bytes on the silo port get
/// nowhere; runs train as usual.
/// </summary>
[Trait("Tier", "Process")]
public sealed class ClusterSecurityTests : IAsyncLifetime
{
    readonly DemoWorkspace _workspace = new("refalign-secure-cluster-");
    ProcessCluster _cluster = null!;
    TestCertificates _certs = null!;

    public async Task InitializeAsync()
    {
        _certs = new TestCertificates(Path.Combine(_workspace.Root, "tls"));
        _cluster = await ProcessCluster.StartAsync(_workspace, "redis-secret-4711", _certs.SiloArgs, _certs.CaPath,
            ("secure-a", "learner,reference"), ("secure-b", "generator,scorer,reference"));
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        _workspace.Dispose();
    }

    [Fact]
    public async Task A_run_trains_across_silos_that_only_talk_mutual_tls_and_an_impostor_cannot_join()
    {
        using var client = _cluster.Client("secure-b");
        var id = await client.StartRunAsync(TinyRuns.RefAlign("secure", 6, checkpointEvery: 3));
        // The generators (secure-b) and the learner (secure-a) exchange batches and weights over the TLS connections.
        await foreach (var _ in client.WatchRunAsync(id, 0, new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token)) { }
        var run = await client.GetRunAsync(id);
        Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");

        // Plain bytes on a silo-to-silo port: the TLS handshake fails and the connection is dropped; the silo carries on.
        using (var raw = new TcpClient())
        {
            await raw.ConnectAsync(IPAddress.Parse("127.0.0.2"), _cluster["secure-a"].SiloPort);
            var stream = raw.GetStream();
            await stream.WriteAsync(new byte[4096]);
            var buffer = new byte[1024];
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            int read;
            try { while ((read = await stream.ReadAsync(buffer, wait.Token)) > 0) { } }
            catch (IOException) { }
        }

        // A silo whose certificate comes from another CA: the others refuse its connections, so it never joins.
        var impostor = new TestCertificates(Path.Combine(_workspace.Root, "impostor"), "impostor");
        await Assert.ThrowsAnyAsync<Exception>(() => _cluster.AddSiloAsync("impostor", "generator", waitForMembership: false,
            extraArgs: impostor.SiloArgs, timeout: TimeSpan.FromSeconds(40)));
        var silos = (await client.GetClusterAsync()).Silos.Where(s => s.Status == "Active").Select(s => s.Name).Order();
        Assert.Equal(["secure-a", "secure-b"], silos);

        // And the cluster still trains.
        var after = await client.StartRunAsync(TinyRuns.RefAlign("secure-after", 3, checkpointEvery: 3));
        await foreach (var _ in client.WatchRunAsync(after, 0, new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token)) { }
        Assert.Equal(RunStatus.Completed, (await client.GetRunAsync(after)).Status);
    }
}
