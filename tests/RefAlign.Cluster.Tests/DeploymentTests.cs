using System.Text.RegularExpressions;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using RefAlign.Client;
using YamlDotNet.RepresentationModel;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// The shipped deployments (infra/): read as Kubernetes and compose read them, and the Kubernetes silos started with the
/// very environment their manifests give them, on a Redis with a password. No Kubernetes or Docker engine runs here, so
/// the manifests are checked for what they promise and their settings are run by real silo processes.
/// </summary>
[Trait("Tier", "Process")]
public sealed class DeploymentTests
{
    static string Repo(string path) => Path.Combine(BuiltTools.RepositoryRoot, path);

    static List<YamlMappingNode> Documents(string path)
    {
        var stream = new YamlStream();
        using (var reader = new StreamReader(Repo(path))) stream.Load(reader);
        return [.. stream.Documents.Select(d => d.RootNode).OfType<YamlMappingNode>()];
    }

    static IEnumerable<YamlMappingNode> Kubernetes(string kind) =>
        Directory.GetFiles(Repo("infra/k8s"), "*.yaml").Order().SelectMany(f => Documents(Path.GetRelativePath(BuiltTools.RepositoryRoot, f)))
            .Where(d => Text(d, "kind") == kind);

    static YamlNode? At(YamlNode? node, params string[] path)
    {
        foreach (var key in path)
        {
            if (node is not YamlMappingNode map) return null;
            // Compose's x- anchors arrive through merge keys (<<): look there after the node's own keys.
            if (map.Children.TryGetValue(new YamlScalarNode(key), out var next)) node = next;
            else if (map.Children.TryGetValue(new YamlScalarNode("<<"), out var merged)) node = At(merged, key);
            else return null;
        }
        return node;
    }

    static string? Text(YamlNode? node, params string[] path) => (At(node, path) as YamlScalarNode)?.Value;

    static IEnumerable<YamlNode> Items(YamlNode? node, params string[] path) => At(node, path) is YamlSequenceNode s ? s.Children : [];

    static Dictionary<string, string> Labels(YamlNode? node) =>
        At(node) is YamlMappingNode map ? map.Children.ToDictionary(c => ((YamlScalarNode)c.Key).Value!, c => ((YamlScalarNode)c.Value).Value!) : [];

    static bool IsSilo(YamlMappingNode deployment) => Labels(At(deployment, "spec", "template", "metadata", "labels")).GetValueOrDefault("app") == "refalign-silo";

    [Fact]
    public void Kubernetes_pods_run_non_root_and_read_only_with_secrets_and_only_the_control_api_is_open()
    {
        var deployments = Kubernetes("Deployment").ToList();
        Assert.Equal(["jaeger", "redis", "refalign-silo-learner", "refalign-silo-workers"], deployments.Select(d => Text(d, "metadata", "name")).Order());
        foreach (var d in deployments)
        {
            var name = Text(d, "metadata", "name");
            var pod = At(d, "spec", "template", "spec");
            Assert.True(Text(pod, "securityContext", "runAsNonRoot") == "true", $"{name}: runAsNonRoot");
            Assert.Equal("RuntimeDefault", Text(pod, "securityContext", "seccompProfile", "type"));
            var mounts = new HashSet<string>();
            foreach (var c in Items(pod, "containers"))
            {
                Assert.True(Text(c, "securityContext", "readOnlyRootFilesystem") == "true", $"{name}: readOnlyRootFilesystem");
                Assert.True(Text(c, "securityContext", "allowPrivilegeEscalation") == "false", $"{name}: allowPrivilegeEscalation");
                Assert.Contains("ALL", Items(c, "securityContext", "capabilities", "drop").Select(n => ((YamlScalarNode)n).Value));
                mounts.UnionWith(Items(c, "volumeMounts").Select(m => Text(m, "mountPath")!));
            }
            // A read-only root still needs somewhere to write: /tmp (dotnet, jaeger) or /data (redis's append-only file).
            Assert.True(mounts.Contains("/tmp") || mounts.Contains("/data"), $"{name}: no writable mount");
        }

        foreach (var silo in deployments.Where(IsSilo))
        {
            var container = Items(silo, "spec", "template", "spec", "containers").Single();
            var env = Items(container, "env").ToDictionary(e => Text(e, "name")!);
            // The readiness probe is gRPC health, which needs no key (tested against a real silo below).
            Assert.Equal("5080", Text(container, "readinessProbe", "grpc", "port"));
            Assert.Equal("refalign-secrets", Text(env["REDIS_PASSWORD"], "valueFrom", "secretKeyRef", "name"));
            Assert.Contains(",password=$(REDIS_PASSWORD)", Text(env["REFALIGN_Cluster__ConnectionString"], "value"));
            Assert.Equal("api-key-operator", Text(env["REFALIGN_Silo__ApiKeys__0__Key"], "valueFrom", "secretKeyRef", "key"));
            Assert.Equal("operator", Text(env["REFALIGN_Silo__ApiKeys__0__Role"], "value"));
            Assert.Equal("viewer", Text(env["REFALIGN_Silo__ApiKeys__1__Role"], "value"));
            Assert.DoesNotContain(Items(container, "ports"), p => Text(p, "hostPort") is not null);

            // One disruption budget per silo deployment, matching its pods.
            var labels = Labels(At(silo, "spec", "template", "metadata", "labels"));
            var budgets = Kubernetes("PodDisruptionBudget")
                .Where(b => Labels(At(b, "spec", "selector", "matchLabels")).All(l => labels.GetValueOrDefault(l.Key) == l.Value)).ToList();
            Assert.Single(budgets);
            Assert.Equal("1", Text(budgets[0], "spec", "maxUnavailable"));
        }

        var redis = Items(deployments.Single(d => Text(d, "metadata", "name") == "redis"), "spec", "template", "spec", "containers").Single();
        var args = Items(redis, "args").Select(a => ((YamlScalarNode)a).Value).ToList();
        Assert.Equal("$(REDIS_PASSWORD)", args[args.IndexOf("--requirepass") + 1]);

        // Ingress: denied by default; open to anyone (no `from`) only on the silos' control API port.
        var policies = Kubernetes("NetworkPolicy").ToList();
        Assert.Contains(policies, p => Labels(At(p, "spec", "podSelector")).Count == 0 && At(p, "spec", "ingress") is null
            && Items(p, "spec", "policyTypes").Any(t => ((YamlScalarNode)t).Value == "Ingress"));
        foreach (var policy in policies)
            foreach (var rule in Items(policy, "spec", "ingress").Where(r => At(r, "from") is null))
            {
                Assert.Equal("refalign-silo", Labels(At(policy, "spec", "podSelector", "matchLabels")).GetValueOrDefault("app"));
                Assert.Equal(["5080"], Items(rule, "ports").Select(p => Text(p, "port")));
            }
        Assert.DoesNotContain(Kubernetes("Service"), s => Text(s, "spec", "type") is "NodePort" or "LoadBalancer");
    }

    [Fact]
    public void Compose_publishes_only_the_control_api_on_loopback_and_demands_the_redis_password_and_a_key()
    {
        var compose = Documents("infra/docker-compose.yml").Single();
        var services = (YamlMappingNode)At(compose, "services")!;
        foreach (var (key, service) in services.Children)
        {
            var name = ((YamlScalarNode)key).Value!;
            foreach (var port in Items(service, "ports").Select(p => ((YamlScalarNode)p).Value!))
            {
                // HOST_IP:HOST_PORT:CONTAINER_PORT, the host address loopback unless the operator opens it.
                Assert.StartsWith("${REFALIGN_PUBLISH_IP:-127.0.0.1}:", port);
                Assert.Contains(port.Split(':')[^1], (string[])["5080", "5081", "16686", "9090", "3000"]);
            }
            if (name == "redis")
            {
                Assert.Empty(Items(service, "ports"));
                var command = Items(service, "command").Select(a => ((YamlScalarNode)a).Value).ToList();
                Assert.StartsWith("${REDIS_PASSWORD:?", command[command.IndexOf("--requirepass") + 1]);
            }
            if (name == "prometheus")
            {
                // It scrapes /metrics on the metrics listener (Silo:MetricsPort, never published) of exactly the compose file's silos.
                Assert.Contains("./prometheus.yml:/etc/prometheus/prometheus.yml:ro", Items(service, "volumes").Select(v => ((YamlScalarNode)v).Value));
                var prometheus = Documents("infra/prometheus.yml").Single();
                var job = (YamlMappingNode)((YamlSequenceNode)At(prometheus, "scrape_configs")!).Children.Single();
                Assert.Equal("/metrics", Text(job, "metrics_path"));
                var targets = ((YamlSequenceNode)At((YamlMappingNode)((YamlSequenceNode)At(job, "static_configs")!).Children.Single(), "targets")!).Children
                    .Select(t => ((YamlScalarNode)t).Value!).Order().ToList();
                Assert.Equal(services.Children.Keys.Select(k => ((YamlScalarNode)k).Value!).Where(n => n.StartsWith("silo-", StringComparison.Ordinal))
                    .Select(n => $"{n}:9464").Order().ToList(), targets);
                Assert.Contains("REFALIGN_Silo__MetricsPort: 9464", File.ReadAllText(Repo("infra/docker-compose.yml")));
            }
            if (name == "grafana")
                Assert.Contains("./grafana/refalign.json:/var/lib/grafana/dashboards/refalign.json:ro", Items(service, "volumes").Select(v => ((YamlScalarNode)v).Value));
            if (!name.StartsWith("silo-", StringComparison.Ordinal)) continue;
            Assert.Equal("true", Text(service, "read_only"));
            Assert.Contains("/tmp", Items(service, "tmpfs").Select(t => ((YamlScalarNode)t).Value));
            Assert.Contains("ALL", Items(service, "cap_drop").Select(t => ((YamlScalarNode)t).Value));
            Assert.StartsWith("redis:6379,password=${REDIS_PASSWORD:?", Text(service, "environment", "REFALIGN_Cluster__ConnectionString"));
            Assert.StartsWith("${REFALIGN_API_KEY:?", Text(service, "environment", "REFALIGN_Silo__ApiKeys__0__Key"));
            Assert.Equal("0.0.0.0", Text(service, "environment", "REFALIGN_Silo__ListenIP"));
        }
        Assert.Equal(["silo-learner"], services.Children.Where(s => ((YamlScalarNode)s.Key).Value!.StartsWith("silo-", StringComparison.Ordinal) && Items(s.Value, "ports").Any())
            .Select(s => ((YamlScalarNode)s.Key).Value));

        // The image drops root in its last stage and never takes it back.
        var dockerfile = File.ReadAllLines(Repo("silo/Dockerfile"));
        var runtime = dockerfile.Skip(Array.FindLastIndex(dockerfile, l => l.StartsWith("FROM ", StringComparison.Ordinal))).ToList();
        Assert.Equal("USER $APP_UID", runtime.Last(l => l.StartsWith("USER ", StringComparison.Ordinal)));
        Assert.True(runtime.FindLastIndex(l => l.StartsWith("USER ", StringComparison.Ordinal)) > runtime.FindLastIndex(l => l.StartsWith("RUN ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task The_kubernetes_environment_as_shipped_runs_a_keyed_cluster_on_a_redis_with_a_password()
    {
        using var workspace = new DemoWorkspace("refalign-k8s-env-");
        const string RedisPassword = "k8s-redis-secret-0123", OperatorKey = "k8s-operator-key-0123456789", ViewerKey = "k8s-viewer-key-0123456789";
        await using var redis = await RedisServer.StartAsync(RedisPassword);
        await using var otlp = new OtlpTraceReceiver();
        await otlp.StartAsync();
        var secrets = new Dictionary<string, string> { ["redis-password"] = RedisPassword, ["api-key-operator"] = OperatorKey, ["api-key-viewer"] = ViewerKey };

        var silos = new List<SiloProcess>();
        try
        {
            var address = 2;
            foreach (var deployment in Kubernetes("Deployment").Where(IsSilo).OrderByDescending(d => Text(d, "metadata", "name")))
            {
                var env = ShippedEnvironment(deployment, secrets, $"127.0.0.{address++}");
                // What differs here, and only this: no Kubernetes API server to watch pods, the test's Redis and OTLP
                // receiver in place of the Services, the workspace as the shared volume, the CPU build's device.
                env["REFALIGN_Cluster__Kubernetes"] = "false";
                env["REFALIGN_Cluster__ConnectionString"] = env["REFALIGN_Cluster__ConnectionString"].Replace("redis.refalign.svc.cluster.local:6379", $"127.0.0.1:{redis.Port}", StringComparison.Ordinal);
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.Endpoint;
                foreach (var k in env.Keys.Where(k => env[k].StartsWith("/data", StringComparison.Ordinal)).ToList()) env[k] = workspace.Root + env[k]["/data".Length..];
                env["REFALIGN_Silo__Device"] = "cpu";
                Assert.Equal("0.0.0.0", env["REFALIGN_Silo__ListenIP"]);
                silos.Add(await SiloProcess.StartAsync(Text(deployment, "metadata", "name")!, workspace.Root, env: env.ToDictionary(e => e.Key, e => (string?)e.Value)));
            }

            RefAlignClient As(string? key) => new(new RefAlignClientOptions { Address = new Uri(silos[0].GrpcAddress), ApiKey = key, CallTimeout = TimeSpan.FromSeconds(60) });
            using var op = As(OperatorKey);
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while ((await op.GetClusterAsync()).Silos.Count(s => s.Status == "Active") < 2)
            {
                Assert.True(DateTime.UtcNow < deadline, "the two silos did not form a cluster through the password-protected Redis");
                await Task.Delay(500);
            }

            // The probes as the manifests declare them, without a key: gRPC health (readiness), /healthz (startup, liveness).
            using var http = new HttpClient();
            foreach (var silo in silos)
            {
                using var channel = GrpcChannel.ForAddress(silo.GrpcAddress);
                Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest())).Status);
                Assert.True((await http.GetAsync($"http://127.0.0.1:{silo.HttpPort}/healthz")).IsSuccessStatusCode);
            }
            using var nobody = As(null);
            Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => nobody.ListRunsAsync())).StatusCode);
            using var viewer = As(ViewerKey);
            Assert.Equal(StatusCode.PermissionDenied, (await Assert.ThrowsAsync<RpcException>(() => viewer.StartRunAsync(TinyRuns.RefAlign("viewer", 2)))).StatusCode);

            // The operator's run: generators on the workers' silo, the learner on the learner's, checkpoints on the volume.
            var id = await op.StartRunAsync(TinyRuns.RefAlign("k8s-env", 4, checkpointEvery: 2, shards: 1));
            await foreach (var _ in viewer.WatchRunAsync(id, 0, new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token)) { }
            var run = await viewer.GetRunAsync(id);
            Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");
            Assert.NotEmpty(Directory.GetDirectories(Path.Combine(workspace.Root, "checkpoints"), "*", SearchOption.AllDirectories));
            var spans = await otlp.WaitForAsync(s => s.Any(x => x.ServiceName == "refalign-silo"), TimeSpan.FromSeconds(30));
            Assert.Contains(spans, s => s.ServiceName == "refalign-silo");
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    /// <summary>
    /// A silo container's environment as the kubelet builds it: the ConfigMap (envFrom), then the container's env with
    /// Secret and downward-API values and <c>$(VAR)</c> references to earlier entries expanded.
    /// </summary>
    static Dictionary<string, string> ShippedEnvironment(YamlMappingNode deployment, Dictionary<string, string> secrets, string podIP)
    {
        var template = At(deployment, "spec", "template");
        var container = Items(template, "spec", "containers").Single();
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var source in Items(container, "envFrom"))
        {
            var map = Kubernetes("ConfigMap").Single(c => Text(c, "metadata", "name") == Text(source, "configMapRef", "name"));
            foreach (var (k, v) in Labels(At(map, "data"))) env[k] = v;
        }
        var labels = Labels(At(template, "metadata", "labels"));
        var pod = Text(deployment, "metadata", "name") + "-0";
        foreach (var entry in Items(container, "env"))
        {
            var name = Text(entry, "name")!;
            var value = Text(entry, "value") ?? (Text(entry, "valueFrom", "secretKeyRef", "key") is { } secret ? secrets[secret] : null);
            if (value is null && Text(entry, "valueFrom", "fieldRef", "fieldPath") is { } field)
            {
                var label = Regex.Match(field, @"^metadata\.labels\['(.+)'\]$");
                value = label.Success ? labels[label.Groups[1].Value]
                    : field switch { "status.podIP" => podIP, "metadata.name" => pod, "metadata.namespace" => "refalign", _ => throw new InvalidOperationException(field) };
            }
            Assert.True(value is not null, $"env {name}: no value the test can resolve");
            env[name] = Regex.Replace(value, @"\$\((\w+)\)", m => env.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value);
        }
        return env;
    }
}
