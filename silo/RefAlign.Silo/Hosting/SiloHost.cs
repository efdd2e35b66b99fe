using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using RefAlign.Runtime;
using RefAlign.Compute;
using Orleans.Dashboard;
using RefAlign.Silo.Telemetry;
using RefAlign.Silo.Dashboard;

namespace RefAlign.Silo.Hosting;

/// <summary>Knobs for embedding the silo host (tests, tools); production uses none of them.</summary>
public sealed record SiloHostOverrides
{
    public string? ContentRoot { get; init; }

    public string? EnvironmentName { get; init; }

    /// <summary>Variables applied exactly like process environment variables, without touching the process.</summary>
    public IReadOnlyDictionary<string, string?>? Environment { get; init; }

    public Action<ISiloBuilder>? ConfigureSilo { get; init; }

    public Action<IServiceCollection>? ConfigureServices { get; init; }
}

/// <summary>
/// Builds the silo process: ASP.NET Core (Kestrel, gRPC, health) + Orleans silo + compute executor + OpenTelemetry.
/// Settings come from appsettings.json, environment (also with prefix <c>REFALIGN_</c>) and the command line, in
/// rising precedence.
/// </summary>
public static partial class SiloHost
{
    public const string EnvironmentPrefix = "REFALIGN_";

    public static WebApplication Build(string[] args, SiloHostOverrides? overrides = null)
    {
        var builder = CreateBuilder(args, overrides);
        RequireDevice(SiloOptionsReader.Read(builder.Configuration));
        RequireRedis(OrleansSettings.Read(builder.Configuration));
        var app = builder.Build();
        MapEndpoints(app);
        return app;
    }

    public static WebApplicationBuilder CreateBuilder(string[] args, SiloHostOverrides? overrides = null)
    {
        overrides ??= new SiloHostOverrides();
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            // appsettings.json sits beside the silo's assembly (the build copies the repository root's file there); the
            // working directory stays the operator's, as the base of relative run-config paths (Silo:DataRoots).
            ContentRootPath = overrides.ContentRoot ?? AppContext.BaseDirectory,
            EnvironmentName = overrides.EnvironmentName,
        });
        AddConfigurationSources(builder.Configuration, args, overrides.Environment);

        var options = SiloOptionsReader.Read(builder.Configuration);
        LoadLibTorch(options, builder.Configuration);
        var orleans = OrleansSettings.Read(builder.Configuration);
        var security = SecuritySettings.Read(builder.Configuration);
        var limits = LimitsReader.Read(builder.Configuration);
        builder.Services.AddSingleton(Options.Create(options));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(orleans);
        builder.Services.AddSingleton(security);

        var certificate = security.Tls ? security.LoadCertificate() : null;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // The control API: HTTP/2, over TLS when a certificate is configured, on Silo:ListenIP (loopback by default).
            kestrel.Listen(security.ListenIP, options.GrpcPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (certificate is not null) listen.UseHttps(certificate);
            });
            if (options.DashboardEnabled)
            {
                // The Orleans Dashboard, on its own port: it shows grain state, so it is opened deliberately.
                kestrel.Listen(security.ListenIP, options.DashboardPort, listen => listen.Protocols = HttpProtocols.Http1);
            }
            if (options.HttpPort != 0)
            {
                // Plain HTTP/1.1 for probes (/healthz tells health, nothing a key guards).
                kestrel.Listen(security.ListenIP, options.HttpPort, listen => listen.Protocols = HttpProtocols.Http1);
            }
            if (options.MetricsPort != 0)
            {
                // /metrics alone, without a key, on an address the operator chose for Prometheus (HttpGuards).
                kestrel.Listen(options.MetricsListenIP ?? security.ListenIP, options.MetricsPort, listen => listen.Protocols = HttpProtocols.Http1);
            }
        });

        // Shutdown budget: the compute grace period plus time for Orleans to deactivate grains and leave the cluster.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.ShutdownGracePeriod + TimeSpan.FromSeconds(30));

        builder.Services.AddSingleton(_ => CreateExecutor(options));
        builder.Services.AddSingleton<ShutdownState>();
        builder.Services.AddHealthChecks()
            .AddCheck<SiloHealthCheck>("silo")
            .AddCheck<ComputeHealthCheck>("compute");
        ConfigureControlServices(builder.Services, options, security, limits, OrleansSilo.PeerAddress(options, orleans));
        builder.Services.AddSiloTelemetry(builder.Configuration, options);

        builder.UseOrleans(silo =>
        {
            silo.ConfigureRefAlignSilo(options, orleans);
            if (certificate is not null) silo.UseMutualTls(certificate, security);
            overrides.ConfigureSilo?.Invoke(silo);
        });

        // After UseOrleans: hosted services stop in reverse order, so compute drains before the silo stops.
        builder.Services.AddHostedService<GracefulShutdown>();
        overrides.ConfigureServices?.Invoke(builder.Services);
        return builder;
    }

    public static void MapEndpoints(WebApplication app)
    {
        // Security headers on every response; /metrics open on loopback, behind a key (or its own listener) elsewhere.
        app.UseHttpGuards();
        app.MapHealthChecks("/healthz", HealthResponse.Options);
        // Prometheus text format of the refalign.*, Orleans, ASP.NET Core and runtime meters.
        app.MapPrometheusScrapingEndpoint(HttpGuards.MetricsPath);
        var silo = app.Services.GetRequiredService<SiloOptions>();
        // The run dashboard at / for browsers (API key as for the control API); the one-line description for the rest.
        var about = app.MapDashboard(_ => Results.Text(
            $"RefAlign silo '{silo.SiloName ?? Environment.MachineName}' (roles {string.Join(',', silo.Roles)}, device {silo.Device}). "
            + $"gRPC (HTTP/2) on port {silo.GrpcPort}; the run dashboard, health (/healthz) and Prometheus (/metrics) on port {silo.HttpPort}.\n"));
        if (silo.DashboardEnabled)
        {
            // The Orleans Dashboard owns its port; the silo's own root page stays on the others.
            app.MapOrleansDashboard().RequireHost($"*:{silo.DashboardPort}");
            about.RequireHost($"*:{silo.GrpcPort}", $"*:{silo.HttpPort}");
        }
        MapControlApi(app);
    }

    /// <summary>
    /// Adds <c>REFALIGN_</c>-prefixed environment variables, then <paramref name="environment"/> (same rules), then the
    /// command line again so it keeps the last word.
    /// </summary>
    public static void AddConfigurationSources(IConfigurationBuilder configuration, string[] args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        configuration.AddEnvironmentVariables(EnvironmentPrefix);
        if (environment is { Count: > 0 })
        {
            configuration.AddInMemoryCollection(EnvironmentAsConfiguration(environment));
        }

        configuration.AddCommandLine(args);
    }

    /// <summary>The keys the environment-variable provider would produce: <c>__</c> becomes <c>:</c>, prefix stripped.</summary>
    internal static IEnumerable<KeyValuePair<string, string?>> EnvironmentAsConfiguration(IReadOnlyDictionary<string, string?> environment)
    {
        // Unprefixed first, prefixed after, as with the real providers (the prefixed source is added later and wins).
        foreach (var (name, value) in environment.Where(e => !e.Key.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase)))
        {
            yield return new(name.Replace("__", ":", StringComparison.Ordinal), value);
        }

        foreach (var (name, value) in environment.Where(e => e.Key.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase)))
        {
            yield return new(name[EnvironmentPrefix.Length..].Replace("__", ":", StringComparison.Ordinal), value);
        }
    }

    /// <summary>
    /// With Redis membership, a silo that cannot reach Redis would fail deep inside Orleans' startup; say so in one line
    /// naming the setting instead.
    /// </summary>
    static void RequireRedis(OrleansSettings settings)
    {
        foreach (var (key, connection) in new[] { ("Cluster:ConnectionString", settings.IsRedisClustering ? settings.ClusteringConnectionString : null),
                     ("GrainStorage:ConnectionString", settings.IsRedisStorage ? settings.StorageConnectionString : null) })
        {
            if (connection is null) continue;
            var options = StackExchange.Redis.ConfigurationOptions.Parse(connection);
            options.AbortOnConnectFail = true;
            options.ConnectTimeout = 5000;
            options.ConnectRetry = 1;
            try
            {
                using var redis = StackExchange.Redis.ConnectionMultiplexer.Connect(options);
                redis.GetDatabase().Ping();
            }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
            {
                throw new SiloConfigurationException(key, $"Redis at {string.Join(", ", options.EndPoints)} is unreachable ({e.Message.Split('\n')[0].Trim()}).");
            }
        }
    }

    /// <summary>
    /// A silo configured for a GPU it cannot use (a CPU build of libtorch, no such device) does not start: it would
    /// otherwise attract the learner and train on the CPU without a word.
    /// </summary>
    private static void RequireDevice(SiloOptions options)
    {
        try { ComputeDevices.Resolve(options.Device, "Silo:Device"); }
        catch (DeviceUnavailableException e) { throw new SiloConfigurationException("Silo:Device", e.Message); }
    }

    /// <summary>
    /// A libtorch named by <c>Silo:LibTorchPath</c> (or <c>REFALIGN_LIBTORCH</c>) is loaded before anything touches
    /// TorchSharp; a folder that cannot be used stops the silo with one line naming the setting, the file and the symbol.
    /// </summary>
    private static void LoadLibTorch(SiloOptions options, IConfiguration configuration)
    {
        if (options.LibTorchPath is not { } folder) return;
        var setting = string.IsNullOrWhiteSpace(configuration[$"{SiloOptions.Section}:{nameof(SiloOptions.LibTorchPath)}"])
            ? TorchLoader.EnvironmentVariable : $"{SiloOptions.Section}:{nameof(SiloOptions.LibTorchPath)}";
        try { TorchLoader.Load(folder, setting); }
        catch (LibTorchLoadException e) { throw new SiloConfigurationException(setting, e.Problem); }
    }

    private static ComputeExecutor CreateExecutor(SiloOptions options)
    {
        // Process-wide in libtorch: set once, before any tensor work.
        if (options.TorchThreads > 0) TorchSharp.torch.set_num_threads(options.TorchThreads);
        var executor = new ComputeExecutor(options.Device, options.ComputeThreads);
        SiloTelemetry.ObserveExecutor(executor);
        return executor;
    }
}
