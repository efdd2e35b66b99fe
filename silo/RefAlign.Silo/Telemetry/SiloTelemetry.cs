using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RefAlign.Runtime;
using RefAlign.Compute.Telemetry;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Telemetry;

/// <summary>
/// OpenTelemetry for the silo: RefAlign and Orleans activity sources and meters, ASP.NET Core/gRPC and runtime
/// instrumentation, and an OTLP exporter driven only by the standard <c>OTEL_*</c> variables.
/// </summary>
public static class SiloTelemetry
{
    public const string DefaultServiceName = "refalign-silo";

    /// <summary>Activity sources the silo records.</summary>
    public static IReadOnlyList<string> ActivitySources { get; } =
    [
        TrainingTelemetry.Name,
        "Microsoft.Orleans.Application",
        "Microsoft.Orleans.Runtime",
        "Microsoft.Orleans.Storage",
    ];

    /// <summary>Meters the silo records.</summary>
    public static IReadOnlyList<string> Meters { get; } = [TrainingTelemetry.Name, "Microsoft.Orleans"];

    public static void AddSiloTelemetry(this IServiceCollection services, IConfiguration configuration, SiloOptions options)
    {
        var export = OtlpSettings.Read(configuration);
        var otel = services.AddOpenTelemetry()
            .ConfigureResource(resource =>
            {
                // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the SDK's own detectors; only fill gaps.
                if (!export.HasServiceName)
                {
                    resource.AddService(DefaultServiceName, serviceInstanceId: options.SiloName ?? Environment.MachineName);
                }

                resource.AddAttributes(
                [
                    new("refalign.cluster_id", options.ClusterId),
                    new("refalign.silo.roles", string.Join(',', options.Roles)),
                    new("refalign.silo.device", options.Device),
                ]);
            })
            .WithTracing(tracing =>
            {
                tracing.AddSource([.. ActivitySources])
                    .AddAspNetCoreInstrumentation(o => o.Filter = http => !IsHealthProbe(http))
                    .AddGrpcClientInstrumentation();
                // No SetSampler: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG apply (default parentbased_always_on).
                if (export.Traces)
                {
                    tracing.AddOtlpExporter();
                }
            })
            .WithMetrics(metrics =>
            {
                metrics.AddMeter([.. Meters])
                    .AddAspNetCoreInstrumentation()
                    .AddRuntimeInstrumentation()
                    // /metrics for Prometheus, beside OTLP: operators scrape silos as they scrape everything else.
                    .AddPrometheusExporter();
                if (export.Metrics)
                {
                    metrics.AddOtlpExporter();
                }
            });
        _ = otel;
        services.AddSingleton(export);
    }

    /// <summary>Observable gauges for the compute executor's queue, on the RefAlign meter.</summary>
    public static void ObserveExecutor(ComputeExecutor executor)
    {
        TrainingTelemetry.Meter.CreateObservableGauge("refalign.compute.queued", () => executor.QueueLength, "{item}", "Compute items waiting for a thread");
        TrainingTelemetry.Meter.CreateObservableGauge("refalign.compute.running", () => executor.Running, "{item}", "Compute items running");
    }

    private static bool IsHealthProbe(HttpContext http) =>
        http.Request.Path.StartsWithSegments("/healthz", StringComparison.OrdinalIgnoreCase)
        || http.Request.Path.StartsWithSegments("/metrics", StringComparison.OrdinalIgnoreCase)
        || http.Request.Path.StartsWithSegments("/grpc.health.v1.Health", StringComparison.Ordinal);
}

/// <summary>
/// Which signals go to OTLP, decided only by the standard variables: an endpoint
/// (<c>OTEL_EXPORTER_OTLP_ENDPOINT</c> or the per-signal one) turns export on; <c>OTEL_TRACES_EXPORTER</c> /
/// <c>OTEL_METRICS_EXPORTER</c> = <c>none</c> turns a signal off (Jaeger accepts traces only). Protocol, headers and
/// timeouts (<c>OTEL_EXPORTER_OTLP_PROTOCOL</c>, ...) are read by the exporter itself.
/// </summary>
public sealed record OtlpSettings(bool Traces, bool Metrics, bool HasServiceName)
{
    public static OtlpSettings Read(IConfiguration configuration)
    {
        static bool Set(string? value) => !string.IsNullOrWhiteSpace(value);
        var any = Set(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var traces = (any || Set(configuration["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]))
            && !IsNone(configuration["OTEL_TRACES_EXPORTER"]);
        var metrics = (any || Set(configuration["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]))
            && !IsNone(configuration["OTEL_METRICS_EXPORTER"]);
        return new OtlpSettings(traces, metrics, Set(configuration["OTEL_SERVICE_NAME"]));
    }

    private static bool IsNone(string? value) => string.Equals(value?.Trim(), "none", StringComparison.OrdinalIgnoreCase);
}
