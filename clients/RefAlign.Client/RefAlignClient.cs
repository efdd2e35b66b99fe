using System.Net.Http;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Grpc.Core;
using System.Security.Cryptography.X509Certificates;
using Grpc.Net.Client;
using Wire = RefAlign.Client.Protos;

namespace RefAlign.Client;

/// <summary>
/// Typed client of the RefAlign control API. Calls throw <see cref="RpcException"/> with the server's status
/// (INVALID_ARGUMENT with <see cref="RpcErrors.Field"/>, NOT_FOUND, UNAUTHENTICATED, UNAVAILABLE...); cancelling a
/// call's token throws <see cref="OperationCanceledException"/>. Thread-safe; one instance per silo address is enough.
/// </summary>
public sealed partial class RefAlignClient : IDisposable
{
    readonly GrpcChannel _channel;
    readonly Wire.RunControl.RunControlClient _stub;
    readonly Metadata? _headers;

    public RefAlignClient(RefAlignClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Address.Scheme is not ("http" or "https"))
            throw new ArgumentException($"silo address '{options.Address}' must start with http:// or https://.", nameof(options));
        Options = options;
        var handler = options.HttpHandler ?? new SocketsHttpHandler
        {
            ConnectTimeout = options.ConnectTimeout,
            KeepAlivePingDelay = options.KeepAlivePingDelay,
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            SslOptions = options.CaCertificatePath is { } ca ? TrustOnly(ca) : new System.Net.Security.SslClientAuthenticationOptions(),
        };
        _channel = GrpcChannel.ForAddress(options.Address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            // A list of many runs, each with its config, can pass the 4 MB default.
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        });
        _stub = new Wire.RunControl.RunControlClient(_channel);
        if (!string.IsNullOrEmpty(options.ApiKey)) _headers = new Metadata { { RefAlignClientOptions.ApiKeyHeader, options.ApiKey } };
    }

    public RefAlignClient(string address, string? apiKey = null) : this(new RefAlignClientOptions { Address = new Uri(address), ApiKey = apiKey })
    {
    }

    public RefAlignClientOptions Options { get; }

    /// <summary>
    /// TLS that trusts the CA in <paramref name="caPath"/> (PEM) besides the system's: a silo's certificate issued by it
    /// is accepted, for the name the client dialled; nothing else is.
    /// </summary>
    static System.Net.Security.SslClientAuthenticationOptions TrustOnly(string caPath)
    {
        X509Certificate2 ca;
        try { ca = X509Certificate2.CreateFromPem(File.ReadAllText(caPath)); }
        catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException)
        {
            throw new ArgumentException($"--ca-cert '{caPath}' is not a readable PEM certificate ({e.Message}).", e);
        }
        return new System.Net.Security.SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                if (errors == System.Net.Security.SslPolicyErrors.None) return true;
                // A wrong name or no certificate is never fine; an unknown issuer is, when it is our CA.
                if (errors != System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors || certificate is null) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(certificate));
            },
        };
    }

    /// <summary>Validates <paramref name="configJson"/> on the silo and starts the run; returns its id.</summary>
    public async Task<string> StartRunAsync(string configJson, CancellationToken cancellation = default) =>
        (await Unary(o => _stub.StartRunAsync(new Wire.StartRunRequest { ConfigJson = configJson }, o), cancellation)).RunId;

    public async Task<RunSummary> GetRunAsync(string runId, CancellationToken cancellation = default) =>
        (await Unary(o => _stub.GetRunAsync(new Wire.RunRef { RunId = runId }, o), cancellation, idempotent: true)).FromProto();

    /// <summary>Asks the run to stop; returns its state right after the request (usually Stopping or Stopped).</summary>
    public async Task<RunSummary> StopRunAsync(string runId, CancellationToken cancellation = default) =>
        (await Unary(o => _stub.StopRunAsync(new Wire.RunRef { RunId = runId }, o), cancellation, idempotent: true)).FromProto();

    public async Task<RunSummary> ResumeRunAsync(string runId, CancellationToken cancellation = default) =>
        (await Unary(o => _stub.ResumeRunAsync(new Wire.RunRef { RunId = runId }, o), cancellation, idempotent: true)).FromProto();

    public async Task<IReadOnlyList<RunSummary>> ListRunsAsync(CancellationToken cancellation = default) =>
        [.. (await Unary(o => _stub.ListRunsAsync(new Wire.ListRunsRequest(), o), cancellation, idempotent: true)).Runs.Select(r => r.FromProto())];

    public async Task<ClusterInfo> GetClusterAsync(CancellationToken cancellation = default) =>
        (await Unary(o => _stub.GetClusterAsync(new Wire.GetClusterRequest(), o), cancellation, idempotent: true)).FromProto();

    /// <summary>
    /// Evaluates a finished run's models through the cluster: progress updates, the last with the result. Not resumed
    /// after a dropped connection (the silo cancels an evaluation whose caller went away): call again. No deadline but
    /// the caller's token; evaluations of large models take minutes.
    /// </summary>
    public async IAsyncEnumerable<RunEvalUpdate> EvaluateRunAsync(RunEvalRequest request,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        using var call = _stub.EvaluateRun(request.ToProto(), new CallOptions(_headers, cancellationToken: cancellation));
        while (true)
        {
            bool more;
            try { more = await call.ResponseStream.MoveNext(cancellation); }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancellation.IsCancellationRequested)
            {
                throw Cancelled(e, cancellation);
            }
            if (!more) yield break;
            yield return call.ResponseStream.Current.FromProto();
        }
    }

    /// <summary>
    /// The run's events with sequence &gt; <paramref name="afterSequence"/>, then live ones until the run ends. When the
    /// connection drops (silo restart, reset, UNAVAILABLE) it reconnects with backoff and asks for the events after the
    /// last one it yielded, so the caller sees every event once, in order. Gives up after
    /// <see cref="RefAlignClientOptions.WatchMaxReconnects"/> failed attempts in a row, rethrowing the last error.
    /// </summary>
    public async IAsyncEnumerable<RunEvent> WatchRunAsync(string runId, long afterSequence = 0,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var last = afterSequence;
        var lastStatus = default(RunStatus?);
        var failures = 0;
        while (true)
        {
            using var call = _stub.WatchRun(new Wire.WatchRunRequest { RunId = runId, AfterSequence = last },
                new CallOptions(_headers, cancellationToken: cancellation));
            var stream = call.ResponseStream;
            while (true)
            {
                bool more;
                try
                {
                    more = await stream.MoveNext(cancellation);
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancellation.IsCancellationRequested)
                {
                    throw Cancelled(e, cancellation);
                }
                catch (Exception e) when (!cancellation.IsCancellationRequested && IsTransient(e) && failures < Options.WatchMaxReconnects)
                {
                    failures++;
                    await Task.Delay(Backoff(failures), cancellation);
                    break;
                }
                if (!more)
                {
                    // The stream ends when the run does; a silo going down gracefully may also close it cleanly, so
                    // an end before a final status is checked, and the watch goes on if the run does.
                    if (lastStatus?.IsFinal() == true) yield break;
                    if (failures >= Options.WatchMaxReconnects || await EndedAsync(runId, cancellation)) yield break;
                    failures++;
                    await Task.Delay(Backoff(failures), cancellation);
                    break;
                }
                var ev = stream.Current;
                // A server replaying from an older position must not make us yield an event twice.
                if (ev.Sequence <= last) continue;
                last = ev.Sequence;
                lastStatus = ev.Status.FromProto();
                failures = 0;
                yield return ev.FromProto();
            }
        }
    }

    /// <summary>Whether the run has reached a final state; false (watch on) when the silo cannot say right now.</summary>
    async Task<bool> EndedAsync(string runId, CancellationToken cancellation)
    {
        try
        {
            var run = await GetRunAsync(runId, cancellation);
            return run.Status.IsFinal();
        }
        catch (Exception e) when (!cancellation.IsCancellationRequested && IsTransient(e))
        {
            return false;
        }
    }

    TimeSpan Backoff(int attempt)
    {
        var ms = Options.WatchInitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 20));
        var capped = Math.Min(ms, Options.WatchMaxBackoff.TotalMilliseconds);
        // Jitter spreads the reconnects of many watchers after a silo restart.
        return TimeSpan.FromMilliseconds(capped * (0.8 + 0.4 * Random.Shared.NextDouble()));
    }

    /// <summary>Failures of the connection rather than answers of the server: worth reconnecting for.</summary>
    internal static bool IsTransient(Exception e) => e switch
    {
        RpcException { StatusCode: StatusCode.Unavailable } => true,
        // A stream cut mid-flight (RST_STREAM, reset connection) surfaces as INTERNAL or CANCELLED with a transport cause;
        // a CANCELLED/INTERNAL status the server chose has no such cause.
        RpcException { StatusCode: StatusCode.Internal or StatusCode.Cancelled or StatusCode.Unknown } r => IsTransport(r.Status.DebugException),
        _ => IsTransport(e),
    };

    static bool IsTransport(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is IOException or HttpRequestException or SocketException or HttpProtocolException or ObjectDisposedException) return true;
        return false;
    }

    /// <summary>
    /// One unary call. An idempotent one that the silo answered UNAVAILABLE (a silo of its cluster went away under the
    /// call; the cluster recovers) is sent again with backoff, up to <see cref="RefAlignClientOptions.UnaryRetries"/>
    /// times; a silo that cannot be reached at all is reported at once. StartRun is never resent.
    /// </summary>
    async Task<T> Unary<T>(Func<CallOptions, AsyncUnaryCall<T>> call, CancellationToken cancellation, bool idempotent = false)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call(new CallOptions(_headers, DateTime.UtcNow + Options.CallTimeout, cancellation));
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancellation.IsCancellationRequested)
            {
                throw Cancelled(e, cancellation);
            }
            catch (RpcException e) when (idempotent && attempt <= Options.UnaryRetries && e.StatusCode == StatusCode.Unavailable
                                          && !IsTransport(e.Status.DebugException))
            {
                await Task.Delay(Backoff(attempt), cancellation);
            }
        }
    }

    // The caller's own cancellation surfaces as OperationCanceledException, as elsewhere in .NET; a CANCELLED status the
    // silo or the transport caused stays an RpcException (Grpc.Net's ThrowOperationCanceledOnCancellation would blur the two).
    static OperationCanceledException Cancelled(RpcException e, CancellationToken cancellation) =>
        new("the call was cancelled.", e, cancellation);

    public void Dispose() => _channel.Dispose();
}
