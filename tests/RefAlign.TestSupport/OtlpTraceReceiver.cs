using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Proto.Collector.Trace.V1;
using OpenTelemetry.Proto.Common.V1;
using OpenTelemetry.Proto.Trace.V1;

namespace RefAlign.TestSupport;

/// <summary>A span as an OTLP receiver got it, with its resource's service name and instrumentation scope.</summary>
public sealed record ReceivedSpan(string ServiceName, string Scope, Span Span)
{
    public string Name => Span.Name;
    public string TraceId => Convert.ToHexStringLower(Span.TraceId.Span);
    public string SpanId => Convert.ToHexStringLower(Span.SpanId.Span);
    public string ParentId => Convert.ToHexStringLower(Span.ParentSpanId.Span);
    public bool IsRoot => ParentId.Trim('0').Length == 0;

    public string? Attribute(string key)
    {
        var value = Span.Attributes.FirstOrDefault(a => a.Key == key)?.Value;
        return value is null ? null : value.ValueCase switch
        {
            AnyValue.ValueOneofCase.StringValue => value.StringValue,
            AnyValue.ValueOneofCase.IntValue => value.IntValue.ToString(CultureInfo.InvariantCulture),
            AnyValue.ValueOneofCase.BoolValue => value.BoolValue ? "true" : "false",
            AnyValue.ValueOneofCase.DoubleValue => value.DoubleValue.ToString(CultureInfo.InvariantCulture),
            _ => value.ToString(),
        };
    }

    public override string ToString() => $"{Scope}:{Name} [{SpanId} ← {ParentId}]";
}

/// <summary>
/// A real OTLP/gRPC trace receiver (the collector's TraceService) on Kestrel, cleartext HTTP/2 on loopback — the same
/// wire path a Jaeger/collector endpoint sees.
/// </summary>
public sealed class OtlpTraceReceiver : TraceService.TraceServiceBase, IAsyncDisposable
{
    private readonly ConcurrentQueue<ReceivedSpan> _spans = new();
    private WebApplication? _app;

    public string Endpoint { get; private set; } = "";

    public IReadOnlyList<ReceivedSpan> Spans => _spans.ToArray();

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = 64 << 20);
        builder.Services.AddSingleton(this);
        _app = builder.Build();
        _app.MapGrpcService<OtlpTraceReceiver>();
        await _app.StartAsync();
        var address = _app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        Endpoint = address.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal);
    }

    /// <summary>Export calls received (one per batch the exporter sent).</summary>
    public int ExportCalls;

    public override Task<ExportTraceServiceResponse> Export(ExportTraceServiceRequest request, ServerCallContext context)
    {
        Interlocked.Increment(ref ExportCalls);
        foreach (var resource in request.ResourceSpans)
        {
            var service = resource.Resource?.Attributes.FirstOrDefault(a => a.Key == "service.name")?.Value.StringValue ?? "";
            foreach (var scope in resource.ScopeSpans)
                foreach (var span in scope.Spans)
                    _spans.Enqueue(new ReceivedSpan(service, scope.Scope?.Name ?? "", span));
        }
        return Task.FromResult(new ExportTraceServiceResponse());
    }

    /// <summary>Waits until <paramref name="done"/> holds for the spans received so far (or the timeout passes).</summary>
    public async Task<IReadOnlyList<ReceivedSpan>> WaitForAsync(Func<IReadOnlyList<ReceivedSpan>, bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var spans = Spans;
            if (done(spans) || DateTime.UtcNow > deadline) return spans;
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }
}
