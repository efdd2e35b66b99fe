using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RefAlign.Grains;
using RefAlign.Silo.Control;

namespace RefAlign.Client.Tests;

/// <summary>
/// A real Kestrel gRPC server on loopback (HTTP/2 cleartext) serving <see cref="ControlGrpcService"/> over a given
/// <see cref="IRunControl"/>, wired the way the silo wires it. Can be stopped and started again on the same port.
/// </summary>
internal sealed class TestSilo : IAsyncDisposable
{
    readonly IRunControl _control;
    readonly string? _apiKey;
    WebApplication? _app;

    TestSilo(IRunControl control, string? apiKey)
    {
        _control = control;
        _apiKey = apiKey;
    }

    public int Port { get; private set; }

    public string Address => $"http://127.0.0.1:{Port}";

    public static async Task<TestSilo> StartAsync(IRunControl control, string? apiKey = null)
    {
        var silo = new TestSilo(control, apiKey);
        await silo.StartAsync(port: 0);
        return silo;
    }

    async Task StartAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l => l.Protocols = HttpProtocols.Http2));
        // A stop with a watch stream open waits this long before cutting the connection.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMilliseconds(500));
        builder.Services.AddSingleton(_control);
        builder.Services.AddGrpc(o => o.Interceptors.Add<ApiKeyInterceptor>(_apiKey ?? ""));
        var app = builder.Build();
        app.MapGrpcService<ControlGrpcService>();
        await app.StartAsync();
        _app = app;
        Port = new Uri(app.Urls.Single()).Port;
    }

    public async Task StopAsync()
    {
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
        _app = null;
    }

    /// <summary>Starts again on the port it had, as a restarted silo does.</summary>
    public Task RestartAsync() => StartAsync(Port);

    public RefAlignClient Client(string? apiKey = null, Func<RefAlignClientOptions, RefAlignClientOptions>? configure = null)
    {
        var options = new RefAlignClientOptions { Address = new Uri(Address), ApiKey = apiKey, CallTimeout = TimeSpan.FromSeconds(20) };
        return new RefAlignClient(configure is null ? options : configure(options));
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
