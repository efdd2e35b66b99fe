extern alias clientlib;

using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using RefAlign.Client;
using Xunit.Abstractions;
using Wire = clientlib::RefAlign.Client.Protos;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The silo the security suite attacks: a real process listening on every interface with an operator and a viewer key,
/// 8 GB for models, a small artifact store and short-lived pending pushes, its data root a <see cref="DemoWorkspace"/>,
/// and a folder outside every root for links to point at.
/// </summary>
public sealed class SecuritySuiteFixture : IAsyncLifetime
{
    public const string Operator = "suite-operator-key-0123456789", Viewer = "suite-viewer-key-0123456789";
    public const long ModelMemory = 8L << 30, StoreBytes = 256L << 20;
    public const int PendingExpirySeconds = 20;

    public DemoWorkspace Workspace { get; } = new("refalign-suite-");

    /// <summary>Outside every root of the silo: what links planted in the data root point at.</summary>
    public string Outside { get; } = Directory.CreateTempSubdirectory("refalign-suite-outside-").FullName;

    public SiloProcess Silo { get; private set; } = null!;

    /// <summary>The listener that serves <c>/metrics</c> alone, without a key (<c>Silo:MetricsPort</c>).</summary>
    public int MetricsPort { get; } = FreePorts.One();

    public async Task InitializeAsync() =>
        Silo = await SiloProcess.StartAsync("suite", Workspace.Root,
        [
            "--Silo:ListenIP=0.0.0.0", $"--Silo:MetricsPort={MetricsPort}", $"--Silo:ApiKeys:0:Key={Operator}", "--Silo:ApiKeys:0:Role=operator",
            $"--Silo:ApiKeys:1:Key={Viewer}", "--Silo:ApiKeys:1:Role=viewer",
            $"--Limits:MaxModelMemoryBytes={ModelMemory}", $"--Limits:MaxArtifactStoreBytes={StoreBytes}", "--Limits:MaxArtifactBytes=67108864",
            "--Limits:MaxPendingPushes=16", $"--Limits:PendingPushExpirySeconds={PendingExpirySeconds}",
        ]);

    public async Task DisposeAsync()
    {
        await Silo.DisposeAsync();
        Workspace.Dispose();
        Directory.Delete(Outside, recursive: true);
    }

    public RefAlignClient Client(string key = Operator) => new(new RefAlignClientOptions { Address = new Uri(Silo.GrpcAddress), ApiKey = key });

    /// <summary>The generated gRPC stubs, for messages the client library never sends.</summary>
    public (GrpcChannel Channel, Wire.Artifacts.ArtifactsClient Artifacts, Metadata Headers) Raw()
    {
        var channel = GrpcChannel.ForAddress(Silo.GrpcAddress);
        return (channel, new Wire.Artifacts.ArtifactsClient(channel), new Metadata { { "x-api-key", Operator } });
    }

    /// <summary>Peak and current resident memory of the silo process (VmHWM, VmRSS), in bytes.</summary>
    public (long Peak, long Now) Memory()
    {
        var status = File.ReadAllLines($"/proc/{Silo.Pid}/status");
        long Read(string key) => long.Parse(status.Single(l => l.StartsWith(key, StringComparison.Ordinal)).Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return (Read("VmHWM"), Read("VmRSS"));
    }

    /// <summary>An address of this machine beyond loopback (where the silo is reached from outside); fails when there is none.</summary>
    public static IPAddress ExternalAddress() =>
        NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
        ?? throw new InvalidOperationException("this machine has no IPv4 address beyond loopback: the /metrics key check cannot be exercised from outside.");

    /// <summary>A copy of the workspace's policy under <paramref name="name"/>, with <paramref name="change"/> applied to its config.json.</summary>
    public string PolicyCopy(string name, Action<JsonObject>? change = null)
    {
        var folder = Path.Combine(Workspace.Root, name);
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(Workspace.PolicyDir)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        if (change is not null)
        {
            var path = Path.Combine(folder, "config.json");
            var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            change(config);
            File.WriteAllText(path, config.ToJsonString());
        }
        return folder;
    }

    /// <summary>Moves <paramref name="file"/> outside the roots and leaves a link to it at <paramref name="linkAt"/> (default: where it was).</summary>
    public void LinkOut(string file, string? linkAt = null)
    {
        var target = Path.Combine(Outside, $"{Guid.NewGuid():N}-{Path.GetFileName(file)}");
        File.Move(file, target);
        linkAt ??= file;
        Directory.CreateDirectory(Path.GetDirectoryName(linkAt)!);
        File.CreateSymbolicLink(linkAt, target);
    }
}

/// <summary>The suite's record of each attempt and the silo's answer, as the closing note of the issue tabulates them.</summary>
internal static class Attempts
{
    public static RpcException Log(ITestOutputHelper output, string attempt, RpcException e)
    {
        output.WriteLine($"| {attempt} | {e.StatusCode} | {e.Status.Detail.Replace("|", "/", StringComparison.Ordinal)} |");
        return e;
    }

    public static async Task<RpcException> RefusedAsync(ITestOutputHelper output, string attempt, Func<Task> call, params StatusCode[] codes)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Log(output, attempt, e);
        Assert.True(codes.Contains(e.StatusCode), $"{attempt}: {e.StatusCode} {e.Status.Detail}");
        Assert.NotEqual(StatusCode.Unknown, e.StatusCode);
        return e;
    }
}
