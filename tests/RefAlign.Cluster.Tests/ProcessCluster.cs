using RefAlign.Client;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// A real cluster on this machine: a Redis server (membership, grain storage, reminders) and silo processes, each
/// advertising its own loopback address (127.0.0.2, 127.0.0.3, …), sharing one checkpoint root and one data root (a
/// <see cref="DemoWorkspace"/>). Silos can be killed with SIGKILL, drained with SIGTERM and started again.
/// </summary>
public sealed class ProcessCluster : IAsyncDisposable
{
    readonly Dictionary<string, (SiloProcess Process, string Roles)> _silos = new(StringComparer.Ordinal);
    readonly string _clusterId = $"test-{Guid.NewGuid():N}"[..13];
    int _nextAddress = 2;

    readonly string[] _extraArgs;

    ProcessCluster(DemoWorkspace workspace, RedisServer redis, string[] extraArgs)
    {
        Workspace = workspace;
        Redis = redis;
        _extraArgs = extraArgs;
    }

    public DemoWorkspace Workspace { get; }

    public RedisServer Redis { get; }

    public string CheckpointRoot => Path.Combine(Workspace.Root, "checkpoints");

    public SiloProcess this[string name] => _silos[name].Process;

    public IEnumerable<string> Names => _silos.Keys;

    /// <summary>The last lines of every silo's log, for the message of a failed wait (CI keeps nothing else).</summary>
    public string Logs(int lines = 40) => string.Join('\n', _silos.Keys.Select(n => $"---- {n}\n{_silos[n].Process.Log(lines)}"));

    /// <summary>Starts Redis and the silos (name, roles) in order, and waits until every silo sees every other.</summary>
    public static Task<ProcessCluster> StartAsync(DemoWorkspace workspace, params (string Name, string Roles)[] silos) =>
        StartAsync(workspace, null, [], null, silos);

    /// <summary>As above, with a Redis password, settings every silo gets (e.g. TLS) and the CA clients trust.</summary>
    public static async Task<ProcessCluster> StartAsync(DemoWorkspace workspace, string? redisPassword, string[] siloArgs, string? clientCaPath,
        params (string Name, string Roles)[] silos)
    {
        var cluster = new ProcessCluster(workspace, await RedisServer.StartAsync(redisPassword), siloArgs) { ClientCaPath = clientCaPath };
        try
        {
            foreach (var (name, roles) in silos) await cluster.AddSiloAsync(name, roles, waitForMembership: false);
            await cluster.WaitForMembersAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Test clusters fail over in seconds: a silent silo is declared dead after at least 12 s (3 s probes, 2 missed, 3 s
    /// table refresh; two silos' votes, so up to about half a minute on a busy host), worker calls retry for 40 s, a failed
    /// attempt restarts after 1 s, supervision every 5 s.
    /// </summary>
    public static readonly string[] ShortTimings =
    [
        "--Timing:SupervisionPeriod=00:00:05", "--Timing:ProbeTimeout=00:00:03", "--Timing:MissedProbesLimit=2", "--Timing:MembershipRefresh=00:00:03",
        "--Timing:WorkerRetryBudget=00:00:40", "--Timing:RestartBackoff=00:00:01", "--Timing:RestartBackoffMax=00:00:05",
        "--Timing:ReplicaGrace=00:00:10", "--Timing:LearnerSiloPoll=00:00:01",
    ];

    /// <summary>Starts one more silo (it joins the running cluster).</summary>
    public async Task<SiloProcess> AddSiloAsync(string name, string roles, bool waitForMembership = true, string[]? extraArgs = null, TimeSpan? timeout = null)
    {
        var address = $"127.0.0.{_nextAddress++}";
        string[] args =
        [
            $"--Silo:Roles={roles}", $"--Silo:AdvertisedIP={address}", $"--Silo:ClusterId={_clusterId}",
            "--Cluster:Provider=Redis", $"--Cluster:ConnectionString={Redis.ConnectionString}", "--GrainStorage:Provider=Redis",
            $"--Silo:CheckpointRoot={CheckpointRoot}", "--Silo:ShutdownGracePeriod=00:00:20", .. ShortTimings,
        ];
        var silo = await SiloProcess.StartAsync(name, Workspace.Root, [.. args, .. _extraArgs, .. extraArgs ?? []], timeout: timeout);
        _silos[name] = (silo, roles);
        if (waitForMembership) await WaitForMembersAsync();
        return silo;
    }

    /// <summary>Drains a silo with SIGTERM and forgets it (a silo that leaves the cluster for good).</summary>
    public async Task RemoveSiloAsync(string name)
    {
        var (silo, _) = _silos[name];
        _silos.Remove(name);
        await silo.TerminateAsync();
        await silo.DisposeAsync();
    }

    /// <summary>A client of the control API through <paramref name="via"/>'s gRPC port.</summary>
    /// <summary>With TLS on the silos: the CA the clients trust (they then dial https://).</summary>
    public string? ClientCaPath { get; set; }

    public RefAlignClient Client(string via) => new(new RefAlignClientOptions
    {
        Address = new Uri(ClientCaPath is null ? this[via].GrpcAddress : $"https://127.0.0.1:{this[via].GrpcPort}"), CaCertificatePath = ClientCaPath,
        CallTimeout = TimeSpan.FromSeconds(60), WatchMaxReconnects = 1000,
        WatchInitialBackoff = TimeSpan.FromMilliseconds(200), WatchMaxBackoff = TimeSpan.FromSeconds(2),
    });

    /// <summary>Waits until a running silo's view of the cluster lists exactly the running silos, each with its roles.</summary>
    public async Task WaitForMembersAsync(TimeSpan? timeout = null)
    {
        var running = _silos.Where(s => s.Value.Process.IsRunning).ToDictionary(s => s.Key, s => s.Value.Roles);
        using var client = Client(running.Keys.First());
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(90));
        while (true)
        {
            try
            {
                var c = await client.GetClusterAsync();
                var seen = c.Silos.Where(s => s.Status == "Active").ToDictionary(s => s.Name, s => string.Join(',', s.Roles));
                if (seen.Count == running.Count && running.All(r => seen.TryGetValue(r.Key, out var roles) && roles == r.Value)) return;
            }
            catch (Grpc.Core.RpcException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the cluster did not settle on {string.Join(", ", running.Keys)}");
            await Task.Delay(500);
        }
    }

    /// <summary>The name of the silo that hosts <paramref name="kind"/> <paramref name="key"/> of a running run, or null.</summary>
    public async Task<string?> WhereAsync(RefAlignClient client, string kind, string key)
    {
        ClusterInfo c;
        try
        {
            c = await client.GetClusterAsync();
        }
        catch (Grpc.Core.RpcException e) when (e.StatusCode == Grpc.Core.StatusCode.Unavailable)
        {
            return null; // a silo is going away under the call: ask again later
        }
        var address = c.Placements.FirstOrDefault(p => p.Kind == kind && p.GrainKey == key)?.Silo;
        return address is null ? null : c.Silos.FirstOrDefault(s => s.Address == address)?.Name;
    }

    /// <summary>
    /// As <see cref="WhereAsync"/>, asked again while the view leaves the grain out (a silo going away under the call,
    /// a grain between activations); fails after <paramref name="timeout"/> (default 1 minute) with the last view.
    /// </summary>
    public async Task<string> PlacedAsync(RefAlignClient client, string kind, string key, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromMinutes(1));
        while (true)
        {
            if (await WhereAsync(client, kind, key) is { } silo) return silo;
            if (DateTime.UtcNow > deadline)
            {
                var view = await client.GetClusterAsync();
                throw new TimeoutException($"{kind} {key} is not in the cluster view; it lists: "
                    + string.Join("; ", view.Placements.Select(p => $"{p.Kind} {p.GrainKey} on {p.Silo}")));
            }
            await Task.Delay(200);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (silo, _) in _silos.Values) await silo.DisposeAsync();
        await Redis.DisposeAsync();
    }
}
