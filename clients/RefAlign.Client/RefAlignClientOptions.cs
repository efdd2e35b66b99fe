namespace RefAlign.Client;

/// <summary>Where the silo is, how to authenticate, and how patient to be.</summary>
public sealed record RefAlignClientOptions
{
    /// <summary>The silo's gRPC endpoint (<c>http://</c> for HTTP/2 cleartext, <c>https://</c> for TLS).</summary>
    public Uri Address { get; init; } = new("http://127.0.0.1:5080");

    /// <summary>PEM file of a CA to trust for an <c>https://</c> silo (e.g. the cluster's own CA), besides the system's.</summary>
    public string? CaCertificatePath { get; init; }

    /// <summary>The metadata key the API key travels in (lower case, as HTTP/2 headers are).</summary>
    public const string ApiKeyHeader = "x-api-key";

    /// <summary>Sent as <c>x-api-key</c> metadata on every call when set.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Deadline of each unary call (start, get, stop, resume, list, cluster).</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long opening a TCP connection to the silo may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// HTTP/2 keep-alive pings on an idle connection, so a watch on a silo that vanished without closing its socket
    /// fails (and reconnects) instead of waiting forever. <see cref="Timeout.InfiniteTimeSpan"/> turns them off.
    /// </summary>
    public TimeSpan KeepAlivePingDelay { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How often an idempotent call (get, list, cluster, stop, resume) is resent after the silo answered UNAVAILABLE. The
    /// default rides out about 30 s (backoff 0.25 s doubling to 5 s): what a cluster takes to declare a killed silo dead.
    /// </summary>
    public int UnaryRetries { get; init; } = 10;

    /// <summary>Consecutive failed reconnect attempts a watch makes before giving up; reset by every event received.</summary>
    public int WatchMaxReconnects { get; init; } = 8;

    /// <summary>Delay before the first reconnect; doubles on each further attempt up to <see cref="WatchMaxBackoff"/>.</summary>
    public TimeSpan WatchInitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan WatchMaxBackoff { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Replaces the default <see cref="SocketsHttpHandler"/> (tests, custom TLS). The client disposes it.</summary>
    public HttpMessageHandler? HttpHandler { get; init; }
}
