using Microsoft.AspNetCore.Builder;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Tests;

/// <summary>
/// One real silo host (Kestrel + Orleans + OpenTelemetry) on free loopback ports, exporting traces over OTLP/gRPC to
/// a receiver the fixture starts first. The OTEL_* settings go in as environment-style overrides, not process env.
/// </summary>
public sealed class SiloHostFixture : IAsyncLifetime
{
    internal OtlpTraceReceiver Receiver { get; } = new();

    public WebApplication App { get; private set; } = null!;

    public int GrpcPort { get; private set; }

    public int HttpPort { get; private set; }

    public const string ServiceName = "refalign-silo-under-test";

    public async Task InitializeAsync()
    {
        await Receiver.StartAsync();
        var ports = FreePorts.Take(4);
        (GrpcPort, HttpPort) = (ports[2], ports[3]);
        App = SiloHost.Build(
            [
                $"--Silo:SiloPort={ports[0]}", $"--Silo:GatewayPort={ports[1]}",
                $"--Silo:GrpcPort={GrpcPort}", $"--Silo:HttpPort={HttpPort}",
                "--Silo:SiloName=silo-under-test", "--Silo:ComputeThreads=2", "--Silo:ShutdownGracePeriod=5",
                // The tests' models, data and runs live in the system temp folder.
                $"--Silo:DataRoots={Path.GetTempPath()}", $"--Silo:OutputRoot={Path.GetTempPath()}",
                "--Logging:LogLevel:Default=Warning",
            ],
            new SiloHostOverrides
            {
                ContentRoot = AppContext.BaseDirectory,
                Environment = new Dictionary<string, string?>
                {
                    ["OTEL_EXPORTER_OTLP_ENDPOINT"] = Receiver.Endpoint,
                    ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc",
                    ["OTEL_SERVICE_NAME"] = ServiceName,
                    ["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment=test",
                    ["OTEL_TRACES_SAMPLER"] = "parentbased_always_on",
                    ["OTEL_METRICS_EXPORTER"] = "none",
                    ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
                },
            });
        await App.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        await Receiver.DisposeAsync();
    }
}
