using System.Net;
using RefAlign.Compute.Files;
using RefAlign.Grains;
using RefAlign.Runtime;
using RefAlign.Silo.Control;

namespace RefAlign.Silo.Hosting;

public static partial class SiloHost
{
    /// <summary>The gRPC control API (runs and cluster, over <see cref="GrainRunControl"/>) and gRPC health.</summary>
    public static WebApplication MapControlApi(WebApplication app)
    {
        app.MapGrpcHealthChecksService();
        app.MapGrpcService<ControlGrpcService>();
        app.MapGrpcService<ArtifactGrpcService>();
        return app;
    }

    /// <summary>Services the control API needs: the grains' run control, the optional API-key check, gRPC options.</summary>
    public static void ConfigureControlServices(IServiceCollection services, SiloOptions options, SecuritySettings security, RunLimits limits, IPAddress peerAddress)
    {
        // Weight snapshots stream to generators on other silos from this silo's weight server (port Silo:WeightPort), on
        // the address the other silos dial this silo at, not on every interface.
        services.AddSingleton(new WeightExchange(peerAddress.ToString(),
            new WeightPortOptions { TokenDeadline = options.WeightTokenDeadline, SlotsPerPeer = options.WeightSlotsPerPeer }));
        services.AddSingleton(new WeightListener(new IPEndPoint(peerAddress, options.WeightPort)));
        services.AddHostedService<WeightServer>();
        var host = new RunHostOptions
        {
            DataRoots = options.DataRoots, OutputRoot = options.OutputRoot, CheckpointRoot = options.CheckpointRoot, EventLogCapacity = options.EventLogCapacity,
            Timings = options.Timings, Limits = limits,
        };
        services.AddSingleton(host);
        services.AddHostedService(_ => new ReadConfinement(host.ReadRoots));
        services.AddRefAlignGrains();
        services.AddSingleton(new ApiKeyInterceptor(security.ApiKeys));
        services.AddGrpc(grpc =>
        {
            grpc.Interceptors.Add<ApiKeyInterceptor>();
            grpc.EnableDetailedErrors = false;
            // Weight and batch payloads never travel over the control API; its largest requests are a run config and an
            // artifact chunk. Up to twice the config limit is read and refused by admission (naming the field), chunks up
            // to 4 MiB; beyond that gRPC refuses a message unread.
            grpc.MaxReceiveMessageSize = Math.Max(2 * limits.MaxConfigBytes, 4 << 20) + (64 << 10);
        });
        services.AddGrpcHealthChecks();
    }
}

internal sealed record WeightListener(IPEndPoint Endpoint);

/// <summary>
/// Runs the <see cref="WeightExchange"/> TCP server for the silo's lifetime. The cluster's members, by address, are the
/// silos membership lists as alive: their places on the weight port are kept from outsiders.
/// </summary>
internal sealed class WeightServer(WeightExchange exchange, WeightListener listener, IClusterMembershipService membership) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => exchange.ServeAsync(listener.Endpoint, stoppingToken, IsMember);

    bool IsMember(IPAddress peer) =>
        membership.CurrentSnapshot.Members.Values.Any(m => m.Status is SiloStatus.Active or SiloStatus.Joining && m.SiloAddress.Endpoint.Address.Equals(peer));
}

/// <summary>
/// From its start, every file this process opens under a model, encoder or data folder must resolve inside the silo's
/// roots (<see cref="ReadRoots"/>): checked where files are opened, whatever links lie on the way.
/// </summary>
internal sealed class ReadConfinement(IReadOnlyList<string> roots) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        ReadRoots.ConfineProcess(roots);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
