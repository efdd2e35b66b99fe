using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Training;
using RefAlign.Rewards.V1;

namespace RefAlign.Grains;

/// <summary>
/// The gRPC wire to a <c>RewardService</c> (clients/RefAlign.Client/Protos/refalign_reward.proto): TLS (with the run's
/// CA when it names one; plain HTTP/2 only on loopback, which the config validator enforces), the key in
/// <c>x-api-key</c>, the deadline on the call. One channel per address and CA, shared by every run of the silo; the
/// checks, retries and the bound on calls in flight are <see cref="RemoteRewardScorer"/>'s.
/// </summary>
public sealed class GrpcRewardTransport(RewardSpec spec, string runId) : IRewardTransport
{
    /// <summary>Replies past this are refused by the channel (a service cannot make the silo allocate without bound).</summary>
    const int MaxReplyBytes = 16 << 20;

    static readonly ConcurrentDictionary<(string Url, string? Ca), GrpcChannel> Channels = new();

    public string Address { get; } = spec.Url ?? throw new ArgumentException("a remote reward needs a url.", nameof(spec));

    public async Task<IReadOnlyList<double>> ScoreAsync(RewardInputs batch, string apiKey, DateTime deadline, CancellationToken cancellation)
    {
        var channel = Channels.GetOrAdd((Address, spec.CaCertificate), key => Open(key.Url, key.Ca));
        var request = new ScoreRequest { RunId = runId };
        request.Prompts.AddRange(batch.Prompts);
        request.Responses.AddRange(batch.Responses);
        request.References.AddRange(batch.References);
        request.Answers.AddRange(batch.Answers.Select(a => a ?? ""));
        var reply = await new RewardService.RewardServiceClient(channel).ScoreAsync(request,
            new CallOptions(new Metadata { { "x-api-key", apiKey } }, deadline, cancellation));
        return [.. reply.Scores];
    }

    static GrpcChannel Open(string url, string? caFile)
    {
        var handler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true, ConnectTimeout = TimeSpan.FromSeconds(10) };
        if (caFile is not null)
        {
            // A private CA: the service's chain must end at exactly this root (the system roots are not consulted).
            var ca = X509CertificateLoader.LoadCertificateFromFile(caFile);
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
            };
        }
        return GrpcChannel.ForAddress(url, new GrpcChannelOptions { HttpHandler = handler, MaxReceiveMessageSize = MaxReplyBytes });
    }

    // The channel is shared; nothing of this run's to release.
    public void Dispose() { }
}
