using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RefAlign.Rewards.V1;

namespace RefAlign.TestSupport;

/// <summary>How the example reward service answers (tests switch it while a run is going).</summary>
public enum RewardServerBehaviour
{
    /// <summary>1 when the last number of the response equals the sample's answer, else 0; with no answer, −|len − 20|/20.</summary>
    Correct,
    /// <summary>One score too few.</summary>
    WrongCount,
    /// <summary>A NaN among the scores.</summary>
    NaN,
    /// <summary>A score of 1e9 (outside any sane range).</summary>
    OutOfRange,
    /// <summary>Never answers (until the caller's deadline cancels the call).</summary>
    Hang,
    /// <summary>UNAVAILABLE.</summary>
    Fail,
    /// <summary>Correct scores, after a short pause (calls overlap).</summary>
    Slow,
}

/// <summary>
/// An example RewardService (clients/RefAlign.Client/Protos/refalign_reward.proto) on Kestrel: TLS with a test CA (or
/// cleartext HTTP/2 on loopback), an API key checked on every call, and a behaviour tests can switch, including the
/// wrong answers a caller must refuse. A real server on a real socket: stopping it is the service going away.
/// </summary>
public sealed class ExampleRewardServer : IAsyncDisposable
{
    public const string Key = "reward-test-key";

    WebApplication? _app;
    readonly TestCertificates? _tls;
    readonly int _port;

    public ExampleRewardServer(TestCertificates? tls = null, int? port = null)
    {
        _tls = tls;
        _port = port ?? FreePorts.One();
    }

    /// <summary>https://127.0.0.1:port with TLS, else http://127.0.0.1:port.</summary>
    public string Url => $"{(_tls is null ? "http" : "https")}://127.0.0.1:{_port}";

    public RewardServerBehaviour Behaviour { get; set; } = RewardServerBehaviour.Correct;

    /// <summary>Calls answered or refused so far, and the texts they carried.</summary>
    public int Calls => _calls;

    public int Texts => _texts;

    int _calls, _texts, _inFlight, _maxInFlight;

    /// <summary>The most calls the service was answering at once.</summary>
    public int MaxInFlight => _maxInFlight;

    public async Task<ExampleRewardServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, _port, l =>
        {
            l.Protocols = HttpProtocols.Http2;
            if (_tls is not null)
            {
                using var pem = X509Certificate2.CreateFromPemFile(_tls.CertificatePath, _tls.KeyPath);
                l.UseHttps(X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null));
            }
        }));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        _app = builder.Build();
        _app.MapGrpcService<Service>();
        await _app.StartAsync();
        return this;
    }

    /// <summary>Stops the server (its port refuses connections until <see cref="StartAsync"/> again).</summary>
    public async Task StopAsync()
    {
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
        _app = null;
    }

    public ValueTask DisposeAsync() => new(StopAsync());

    internal static double Correctness(string response, string answer)
    {
        var numbers = Regex.Matches(response, @"-?\d+(?:\.\d+)?");
        return numbers.Count > 0 && numbers[^1].Value == answer.Trim() ? 1.0 : 0.0;
    }

    internal sealed class Service(ExampleRewardServer server) : RewardService.RewardServiceBase
    {
        public override async Task<ScoreReply> Score(ScoreRequest request, ServerCallContext context)
        {
            var now = Interlocked.Increment(ref server._inFlight);
            int max;
            while (now > (max = server._maxInFlight) && Interlocked.CompareExchange(ref server._maxInFlight, now, max) != max) { }
            try { return await Answer(request, context); }
            finally { Interlocked.Decrement(ref server._inFlight); }
        }

        async Task<ScoreReply> Answer(ScoreRequest request, ServerCallContext context)
        {
            Interlocked.Increment(ref server._calls);
            Interlocked.Add(ref server._texts, request.Responses.Count);
            if (context.RequestHeaders.GetValue("x-api-key") != Key)
                throw new RpcException(new Status(StatusCode.Unauthenticated, "a valid x-api-key is required."));
            var n = request.Responses.Count;
            if (request.Prompts.Count != n || request.References.Count != n || request.Answers.Count != n)
                throw new RpcException(new Status(StatusCode.InvalidArgument, "prompts, responses, references and answers must have one entry per sample."));
            var scores = Enumerable.Range(0, n).Select(i => request.Answers[i].Length > 0
                ? Correctness(request.Responses[i], request.Answers[i])
                : -Math.Abs(request.Responses[i].Length - 20) / 20.0).ToList();
            switch (server.Behaviour)
            {
                case RewardServerBehaviour.WrongCount: scores.RemoveAt(scores.Count - 1); break;
                case RewardServerBehaviour.NaN: scores[0] = double.NaN; break;
                case RewardServerBehaviour.OutOfRange: scores[0] = 1e9; break;
                case RewardServerBehaviour.Fail: throw new RpcException(new Status(StatusCode.Unavailable, "the example service is failing on purpose."));
                case RewardServerBehaviour.Hang: await Task.Delay(Timeout.Infinite, context.CancellationToken); break;
                case RewardServerBehaviour.Slow: await Task.Delay(200, context.CancellationToken); break;
            }
            var reply = new ScoreReply();
            reply.Scores.AddRange(scores);
            return reply;
        }
    }
}
