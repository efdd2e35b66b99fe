using System.Globalization;
using System.Net;
using RefAlign.Compute;
using RefAlign.Grains;
using RefAlign.Runtime;

namespace RefAlign.Silo.Hosting;

/// <summary>The silo's own settings, section <c>Silo</c> (env <c>REFALIGN_Silo__Roles</c>, CLI <c>--Silo:Roles=...</c>).</summary>
public sealed record SiloOptions
{
    public const string Section = "Silo";

    public string ClusterId { get; init; } = "refalign";
    public string ServiceId { get; init; } = "refalign";
    public string? SiloName { get; init; }
    public int SiloPort { get; init; } = 11111;
    public int GatewayPort { get; init; } = 30000;

    /// <summary>Kestrel port for gRPC, HTTP/2 only: cleartext HTTP/2 needs prior knowledge, which excludes HTTP/1.1.</summary>
    public int GrpcPort { get; init; } = 5080;

    /// <summary>HTTP/1.1 port for <c>/healthz</c> and plain HTTP probes; 0 turns it off.</summary>
    public int HttpPort { get; init; } = 5081;

    /// <summary>TCP port of the weight server that streams policy weights to generators on other silos; 0 = any free port.</summary>
    public int WeightPort { get; init; }

    /// <summary>
    /// A connection to the weight port that has not presented its token by then is closed, before it may hold a transfer
    /// place (<see cref="WeightPortOptions.TokenDeadline"/>).
    /// </summary>
    public TimeSpan WeightTokenDeadline { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Connections one peer address may hold on the weight port at once.</summary>
    public int WeightSlotsPerPeer { get; init; } = 4;

    /// <summary>
    /// Port of a listener that serves only <c>/metrics</c>, on <see cref="MetricsListenIP"/>, without a key: the
    /// operator's choice of a network only Prometheus reaches. 0: <c>/metrics</c> is on <see cref="HttpPort"/>, open from
    /// loopback and behind an API key (<c>Authorization: Bearer</c>) from anywhere else.
    /// </summary>
    public int MetricsPort { get; init; }

    /// <summary>Address of the <see cref="MetricsPort"/> listener; empty: <c>Silo:ListenIP</c>.</summary>
    public IPAddress? MetricsListenIP { get; init; }

    /// <summary>Address other silos use to reach this one (the pod IP in Kubernetes); empty means "pick one".</summary>
    public IPAddress? AdvertisedIP { get; init; }

    /// <summary>Roles of <see cref="SiloRoles"/>; by default a silo does everything.</summary>
    public IReadOnlyList<string> Roles { get; init; } = SiloRoles.All;

    /// <summary><c>cpu</c> or <c>cuda</c>/<c>cuda:N</c>.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>
    /// A libtorch lib folder loaded at startup instead of the libtorch beside the silo (a GPU machine's PyTorch;
    /// docs/gpu.md); also environment variable <c>REFALIGN_LIBTORCH</c>. Null: the packaged libtorch.
    /// </summary>
    public string? LibTorchPath { get; init; }

    /// <summary>Serves the Orleans Dashboard on <see cref="DashboardPort"/> (<c>Silo:Dashboard:Enabled</c>); off by default.</summary>
    public bool DashboardEnabled { get; init; }

    /// <summary>The Orleans Dashboard's own port (<c>Silo:Dashboard:Port</c>), on <c>Silo:ListenIP</c>.</summary>
    public int DashboardPort { get; init; } = 8080;

    /// <summary>A learner goes only to a learner silo with a GPU device; with none active, runs wait (set it alike on every silo).</summary>
    public bool LearnerRequiresAccelerator { get; init; }

    /// <summary>Events each run keeps in memory for watchers; a watcher asking for older ones is told the oldest kept.</summary>
    public int EventLogCapacity { get; init; } = RunHostOptions.DefaultEventLogCapacity;

    /// <summary>
    /// Folders remote run configs may read models, encoders and data from (read-only); relative paths resolve under the
    /// first. By default the folder the silo was started from.
    /// </summary>
    public IReadOnlyList<string> DataRoots { get; init; } = [Directory.GetCurrentDirectory()];

    /// <summary>The only folder runs write under (outputs, caches, logs); by default the first data root.</summary>
    public string OutputRoot { get; init; } = Directory.GetCurrentDirectory();

    /// <summary>
    /// Where learners write checkpoints (a folder per run), shared by every learner silo so that a run whose learner silo
    /// is lost resumes elsewhere; empty: each run's <c>output_dir/checkpoints</c>.
    /// </summary>
    public string? CheckpointRoot { get; init; }

    /// <summary>Every timeout, backoff and retry budget of the run core (section <c>Timing</c>).</summary>
    public RunTimings Timings { get; init; } = new();

    /// <summary>Dedicated tensor threads for <see cref="Device"/>.</summary>
    public int ComputeThreads { get; init; } = 1;

    /// <summary>
    /// libtorch's intra-op threads for this process (0: libtorch's default, one per core). Several silos on one machine
    /// each set a share of the cores, or they contend for all of them.
    /// </summary>
    public int TorchThreads { get; init; }

    /// <summary>How long shutdown waits for running compute work before the silo stops.</summary>
    public TimeSpan ShutdownGracePeriod { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>A setting is missing or malformed; <see cref="Setting"/> is its configuration path.</summary>
public sealed class SiloConfigurationException(string setting, string problem)
    : Exception($"Invalid setting '{setting}': {problem}")
{
    public string Setting { get; } = setting;
}

/// <summary>Reads <see cref="SiloOptions"/> by hand so every error names the exact configuration key.</summary>
public static class SiloOptionsReader
{
    /// <summary><c>REFALIGN_LIBTORCH</c> as the prefixed environment provider names it.</summary>
    internal const string LibTorchVariable = "LIBTORCH";

    public static SiloOptions Read(IConfiguration configuration)
    {
        var section = configuration.GetSection(SiloOptions.Section);
        var defaults = new SiloOptions();
        var options = new SiloOptions
        {
            ClusterId = Text(section, nameof(SiloOptions.ClusterId), defaults.ClusterId),
            ServiceId = Text(section, nameof(SiloOptions.ServiceId), defaults.ServiceId),
            SiloName = Optional(section, nameof(SiloOptions.SiloName)),
            SiloPort = Port(section, nameof(SiloOptions.SiloPort), defaults.SiloPort),
            GatewayPort = Port(section, nameof(SiloOptions.GatewayPort), defaults.GatewayPort),
            GrpcPort = Port(section, nameof(SiloOptions.GrpcPort), defaults.GrpcPort),
            HttpPort = Int(section, nameof(SiloOptions.HttpPort), defaults.HttpPort, 0, 65535),
            WeightPort = Int(section, nameof(SiloOptions.WeightPort), defaults.WeightPort, 0, 65535),
            AdvertisedIP = Address(section, nameof(SiloOptions.AdvertisedIP)),
            WeightTokenDeadline = AtLeast(Duration(section, nameof(SiloOptions.WeightTokenDeadline), defaults.WeightTokenDeadline), TimeSpan.FromMilliseconds(50), nameof(SiloOptions.WeightTokenDeadline)),
            WeightSlotsPerPeer = Int(section, nameof(SiloOptions.WeightSlotsPerPeer), defaults.WeightSlotsPerPeer, 1, 1024),
            MetricsPort = Int(section, nameof(SiloOptions.MetricsPort), defaults.MetricsPort, 0, 65535),
            MetricsListenIP = Address(section, nameof(SiloOptions.MetricsListenIP)),
            Roles = Roles(section, nameof(SiloOptions.Roles), defaults.Roles),
            Device = Device(section, nameof(SiloOptions.Device), defaults.Device),
            LibTorchPath = Optional(section, nameof(SiloOptions.LibTorchPath)) ?? Optional(configuration, LibTorchVariable),
            LearnerRequiresAccelerator = Flag(section, nameof(SiloOptions.LearnerRequiresAccelerator), defaults.LearnerRequiresAccelerator),
            DashboardEnabled = Flag(section, "Dashboard:Enabled", defaults.DashboardEnabled),
            DashboardPort = Int(section, "Dashboard:Port", defaults.DashboardPort, 1, 65535),
            CheckpointRoot = Optional(section, nameof(SiloOptions.CheckpointRoot)) is { } checkpoints ? Path.GetFullPath(checkpoints) : null,
            Timings = TimingsReader.Read(configuration),
            EventLogCapacity = Int(section, nameof(SiloOptions.EventLogCapacity), defaults.EventLogCapacity, 16, 1 << 20),
            DataRoots = Folders(section, nameof(SiloOptions.DataRoots)) is { Count: > 0 } roots ? roots : defaults.DataRoots,
            ComputeThreads = Int(section, nameof(SiloOptions.ComputeThreads), defaults.ComputeThreads, 1, 256),
            TorchThreads = Int(section, nameof(SiloOptions.TorchThreads), defaults.TorchThreads, 0, 1024),
            ShutdownGracePeriod = Duration(section, nameof(SiloOptions.ShutdownGracePeriod), defaults.ShutdownGracePeriod),
        };

        options = options with { OutputRoot = Optional(section, nameof(SiloOptions.OutputRoot)) is { } output ? Path.GetFullPath(output) : options.DataRoots[0] };

        // Clashing ports otherwise fail late and obscurely (an address-in-use from deep inside Orleans or Kestrel).
        var ports = new (string Name, int Port)[]
        {
            (nameof(SiloOptions.SiloPort), options.SiloPort),
            (nameof(SiloOptions.GatewayPort), options.GatewayPort),
            (nameof(SiloOptions.GrpcPort), options.GrpcPort),
            (nameof(SiloOptions.HttpPort), options.HttpPort),
            (nameof(SiloOptions.WeightPort), options.WeightPort),
            (nameof(SiloOptions.MetricsPort), options.MetricsPort),
        };
        foreach (var clash in ports.Where(p => p.Port != 0).GroupBy(p => p.Port).Where(g => g.Count() > 1))
        {
            var names = clash.Select(p => p.Name).ToArray();
            throw new SiloConfigurationException(Key(names[^1]), $"port {clash.Key} is also used by {string.Join(", ", names[..^1].Select(Key))}.");
        }

        return options;
    }

    private static string Key(string name) => $"{SiloOptions.Section}:{name}";

    private static string? Optional(IConfiguration section, string name)
    {
        var value = section[name];
        return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
    }

    private static string Text(IConfigurationSection section, string name, string fallback)
    {
        var value = section[name];
        if (value is null)
        {
            return fallback;
        }

        return string.IsNullOrWhiteSpace(value)
            ? throw new SiloConfigurationException(Key(name), "must not be empty.")
            : value.Trim();
    }

    private static bool Flag(IConfigurationSection section, string name, bool fallback) =>
        Optional(section, name) is not { } value ? fallback
        : bool.TryParse(value, out var b) ? b
        : throw new SiloConfigurationException(Key(name), $"'{value}' is not true or false.");

    private static int Int(IConfigurationSection section, string name, int fallback, int min, int max)
    {
        var value = section[name];
        if (string.IsNullOrWhiteSpace(value))
        {
            return fallback;
        }

        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var result))
        {
            throw new SiloConfigurationException(Key(name), $"'{value}' is not an integer.");
        }

        return result < min || result > max
            ? throw new SiloConfigurationException(Key(name), $"{result} is outside {min}..{max}.")
            : result;
    }

    private static int Port(IConfigurationSection section, string name, int fallback) =>
        Int(section, name, fallback, 1, 65535);

    private static IPAddress? Address(IConfigurationSection section, string name)
    {
        var value = Optional(section, name);
        if (value is null)
        {
            return null;
        }

        return IPAddress.TryParse(value, out var address)
            ? address
            : throw new SiloConfigurationException(Key(name), $"'{value}' is not an IP address.");
    }

    private static TimeSpan Duration(IConfigurationSection section, string name, TimeSpan fallback) =>
        TimingsReader.Duration(Optional(section, name), Key(name)) ?? fallback;

    private static TimeSpan AtLeast(TimeSpan value, TimeSpan minimum, string name) =>
        value >= minimum ? value : throw new SiloConfigurationException(Key(name), $"{value} is shorter than {minimum}.");

    /// <summary>A list of folders: a JSON array or a comma-separated string; made absolute.</summary>
    private static IReadOnlyList<string> Folders(IConfigurationSection section, string name)
    {
        var child = section.GetSection(name);
        var raw = child.Value is { } text ? text.Split(',') : [.. child.GetChildren().Select(c => c.Value ?? "")];
        return [.. raw.Select(r => r.Trim()).Where(r => r.Length > 0).Select(Path.GetFullPath)];
    }

    private static IReadOnlyList<string> Roles(IConfigurationSection section, string name, IReadOnlyList<string> fallback)
    {
        // Accepts "learner,generator" (env, CLI) as well as a JSON array (Silo:Roles:0, Silo:Roles:1, ...).
        var child = section.GetSection(name);
        var raw = child.Value ?? string.Join(',', child.GetChildren().Select(c => c.Value));
        if (child.Value is null && !child.GetChildren().Any())
        {
            return fallback;
        }

        var roles = SiloMetadataKeys.ParseRoles(raw);
        if (roles.Count == 0)
        {
            throw new SiloConfigurationException(Key(name), $"needs at least one of {string.Join(", ", SiloRoles.All)}.");
        }

        var unknown = roles.Where(r => !SiloRoles.IsKnown(r)).ToArray();
        return unknown.Length > 0
            ? throw new SiloConfigurationException(Key(name),
                $"unknown role(s) {string.Join(", ", unknown.Select(u => $"'{u}'"))}; expected {string.Join(", ", SiloRoles.All)}.")
            : roles;
    }

    /// <summary>The device's canonical name (<c>cuda</c> → <c>cuda:0</c>, as metadata and cluster status report it).</summary>
    private static string Device(IConfigurationSection section, string name, string fallback)
    {
        var value = Optional(section, name);
        if (value is null)
        {
            return fallback;
        }

        try
        {
            return ComputeDevices.Canonical(value, Key(name));
        }
        catch (DeviceUnavailableException e)
        {
            throw new SiloConfigurationException(Key(name), e.Message);
        }
    }
}
