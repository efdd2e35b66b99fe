using RefAlign.Compute;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using RefAlign.Runtime;

namespace RefAlign.Silo.Hosting;

/// <summary>Healthy while the local silo is an active cluster member.</summary>
internal sealed class SiloHealthCheck(ISiloStatusOracle oracle) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var status = oracle.CurrentStatus;
        var data = new Dictionary<string, object>
        {
            ["status"] = status.ToString(),
            ["silo"] = oracle.SiloAddress.ToString(),
            ["activeSilos"] = oracle.GetActiveSilos().Length,
        };
        return Task.FromResult(status == SiloStatus.Active
            ? HealthCheckResult.Healthy($"silo {oracle.SiloName} is active", data)
            : HealthCheckResult.Unhealthy($"silo {oracle.SiloName} is {status}", data: data));
    }
}

/// <summary>Reports the compute executor's queue; degraded while draining for shutdown or when the queue backs up.</summary>
internal sealed class ComputeHealthCheck(ComputeExecutor executor, ShutdownState shutdown) : IHealthCheck
{
    // Beyond this many queued items per thread, callers wait long enough that a balancer should look elsewhere.
    private const int BackedUpPerThread = 64;

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object>
        {
            ["device"] = executor.Device,
            // What the loaded libtorch drives (cpu, or cuda with its device count).
            ["libtorch"] = ComputeDevices.Build,
            ["threads"] = executor.ThreadCount,
            ["queued"] = executor.QueueLength,
            ["running"] = executor.Running,
            ["completed"] = executor.Completed,
        };
        // A libtorch loaded from a folder (Silo:LibTorchPath) says which, so a check can tell it from the packaged one.
        if (TorchLoader.Loaded is { } loaded) data["libtorch_folder"] = loaded.Folder;
        // On a GPU: its memory, from the CUDA runtime libtorch loaded (TorchSharp has no memory query of its own).
        if (DeviceMemory.Of(executor.Device) is { } memory)
        {
            data["memory_total_bytes"] = memory.TotalBytes;
            data["memory_used_bytes"] = memory.UsedBytes;
        }
        if (shutdown.Draining)
        {
            return Task.FromResult(HealthCheckResult.Degraded("draining for shutdown", data: data));
        }

        return Task.FromResult(executor.QueueLength > BackedUpPerThread * executor.ThreadCount
            ? HealthCheckResult.Degraded("compute queue is backed up", data: data)
            : HealthCheckResult.Healthy("compute executor ready", data));
    }
}

/// <summary>JSON body for <c>/healthz</c>: overall status plus each check's description and data.</summary>
internal static class HealthResponse
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public static HealthCheckOptions Options { get; } = new()
    {
        ResponseWriter = WriteAsync,
        ResultStatusCodes =
        {
            [HealthStatus.Healthy] = StatusCodes.Status200OK,
            [HealthStatus.Degraded] = StatusCodes.Status200OK,
            [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
        },
    };

    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString(),
            durationMs = report.TotalDuration.TotalMilliseconds,
            checks = report.Entries.ToDictionary(
                e => e.Key,
                e => new { status = e.Value.Status.ToString(), description = e.Value.Description, data = e.Value.Data }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, Json));
    }
}
