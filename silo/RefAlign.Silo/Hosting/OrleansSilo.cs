using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Orleans.Configuration;
using Orleans.Dashboard;
using RefAlign.Runtime;
using StackExchange.Redis;

namespace RefAlign.Silo.Hosting;

/// <summary>Orleans silo configuration: membership, storage, endpoints, metadata, placement and tracing.</summary>
public static class OrleansSilo
{
    public static ISiloBuilder ConfigureRefAlignSilo(this ISiloBuilder silo, SiloOptions options, OrleansSettings settings)
    {
        if (options.DashboardEnabled)
        {
            silo.AddDashboard();
        }

        if (settings.Kubernetes)
        {
            // Reads POD_IP/POD_NAME/POD_NAMESPACE and ORLEANS_CLUSTER_ID/ORLEANS_SERVICE_ID and watches pods.
            silo.UseKubernetesHosting();
        }

        if (settings.IsRedisClustering)
        {
            silo.UseRedisClustering(o => o.ConfigurationOptions = ConfigurationOptions.Parse(settings.ClusteringConnectionString!));
            silo.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = options.ClusterId;
                o.ServiceId = options.ServiceId;
            });
            // Under Kubernetes hosting this still sets the ports; the pod IP replaces the address in a post-configure step.
            ConfigureEndpoints(silo, options);
        }
        else
        {
            silo.UseLocalhostClustering(options.SiloPort, options.GatewayPort, settings.PrimarySiloEndpoint, options.ServiceId, options.ClusterId);
        }

        if (options.SiloName is { } name)
        {
            silo.Configure<Orleans.Configuration.SiloOptions>(o => o.SiloName = name);
        }

        // Reminders supervise running runs (a lost silo's runs restart elsewhere): their table lives where membership
        // does, so every silo of the cluster sees every reminder.
        if (settings.IsRedisClustering)
        {
            silo.UseRedisReminderService(o => o.ConfigurationOptions = ConfigurationOptions.Parse(settings.ClusteringConnectionString!));
        }
        else
        {
            silo.UseInMemoryReminderService();
        }

        silo.Configure<ReminderOptions>(o =>
        {
            o.MinimumReminderPeriod = TimeSpan.FromTicks(Math.Min(o.MinimumReminderPeriod.Ticks, options.Timings.SupervisionPeriod.Ticks));
            // A silo drops its first read of the reminder table when its ring range changes meanwhile (silos starting
            // together, as after a whole-cluster restart) and reads again only at this refresh: Orleans' 5 minutes
            // would leave runs unsupervised that long, so refresh every supervision period.
            o.RefreshReminderListPeriod = TimeSpan.FromTicks(Math.Min(o.RefreshReminderListPeriod.Ticks, options.Timings.SupervisionPeriod.Ticks));
        });

        if (settings.IsRedisStorage)
        {
            silo.AddRedisGrainStorageAsDefault(o => o.ConfigurationOptions = ConfigurationOptions.Parse(settings.StorageConnectionString!));
        }
        else
        {
            silo.AddMemoryGrainStorageAsDefault();
        }

        // Each silo re-reads the membership table this often (Timing:MembershipRefresh; Orleans' default is 60 s). Placement by role needs every silo's
        // metadata, and a silo whose metadata fetch failed (a busy silo) is asked again only on a table update after a
        // quiet period derived from this: faster refreshes let a joining silo take its shards within a minute.
        // How fast a silent silo is declared dead (Timing:ProbeTimeout, MissedProbesLimit): test clusters shorten it, so
        // a failover takes seconds.
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.TableRefreshTimeout = options.Timings.MembershipRefresh;
            o.ProbeTimeout = options.Timings.ProbeTimeout;
            o.NumMissedProbesLimit = options.Timings.MissedProbesLimit;
        });

        // The strongly consistent grain directory: with the default one, the loss of the silo that held a grain's
        // directory entry can leave a second activation of that grain (a second learner, a second run loop) while the
        // first lives on. A run must have exactly one of each.
#pragma warning disable ORLEANSEXP003 // Experimental in Orleans 10; its consistency is what the failover tests rely on.
        silo.AddDistributedGrainDirectory();
#pragma warning restore ORLEANSEXP003

        silo.AddRefAlignRuntime(options);
        silo.AddActivityPropagation();
        return silo;
    }

    /// <summary>Roles, device and placement from the runtime; the silo's options supply the values.</summary>
    public static ISiloBuilder AddRefAlignRuntime(this ISiloBuilder silo, SiloOptions options) =>
        RuntimeSiloBuilderExtensions.AddRefAlignRuntime(silo, options.Roles, options.Device, options.ComputeThreads, options.LearnerRequiresAccelerator);

    /// <summary>
    /// Silo-to-silo and gateway connections over TLS, both ends authenticated with the silo certificate: a peer must
    /// present the same certificate, or one issued by the CA of <c>Silo:Tls:CaPath</c> when given.
    /// </summary>
    public static ISiloBuilder UseMutualTls(this ISiloBuilder silo, X509Certificate2 certificate, SecuritySettings security)
    {
        var ca = security.CaPath is { } path ? X509Certificate2.CreateFromPem(File.ReadAllText(path)) : null;
        return silo.UseTls(certificate, tls =>
        {
            tls.RemoteCertificateMode = Orleans.Connections.Security.RemoteCertificateMode.RequireCertificate;
            tls.ClientCertificateMode = Orleans.Connections.Security.RemoteCertificateMode.RequireCertificate;
            tls.RemoteCertificateValidation = (remote, _, _) => PeerCertificates.Trusted(remote, certificate, ca);
        });
    }

    /// <summary>
    /// The address other silos reach this one at, as <see cref="ConfigureEndpoints"/> advertises it: Silo:AdvertisedIP,
    /// else (Redis clustering, e.g. containers) the host name's IPv4 address, else (one machine) loopback.
    /// </summary>
    public static IPAddress PeerAddress(SiloOptions options, OrleansSettings settings) =>
        options.AdvertisedIP
        ?? (settings.IsRedisClustering
            ? Dns.GetHostAddresses(Dns.GetHostName()).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? IPAddress.Loopback
            : IPAddress.Loopback);

    private static void ConfigureEndpoints(ISiloBuilder silo, SiloOptions options)
    {
        if (options.AdvertisedIP is { } address)
        {
            // On that address only: silo-to-silo and gateway ports are the cluster's, not the world's.
            silo.ConfigureEndpoints(address, options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: false);
        }
        else
        {
            // In containers the host name resolves to the container's address on the cluster network.
            silo.ConfigureEndpoints(Dns.GetHostName(), options.SiloPort, options.GatewayPort, AddressFamily.InterNetwork, listenOnAnyHostAddress: true);
        }
    }
}
