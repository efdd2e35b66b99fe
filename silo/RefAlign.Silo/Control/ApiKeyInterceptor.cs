using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Control;

/// <summary>
/// API-key authentication and authorization for every gRPC call. With keys configured, a call whose <c>x-api-key</c>
/// metadata matches none fails with UNAUTHENTICATED, and a viewer's key calling anything but a read (get, list, watch,
/// cluster) with PERMISSION_DENIED, before the call reaches the service. gRPC health needs no key (probes carry none).
/// With no key configured the check is off (the host refuses that beyond loopback unless told to allow it).
/// </summary>
public sealed class ApiKeyInterceptor : Interceptor
{
    /// <summary>The metadata key clients send the API key in (lower case, as HTTP/2 headers are).</summary>
    public const string Header = "x-api-key";

    /// <summary>Calls a viewer's key may make; every other control call needs an operator's.</summary>
    static readonly HashSet<string> ReadMethods = new(StringComparer.Ordinal)
    {
        "/refalign.control.v1.RunControl/GetRun", "/refalign.control.v1.RunControl/ListRuns",
        "/refalign.control.v1.RunControl/WatchRun", "/refalign.control.v1.RunControl/GetCluster",
        "/refalign.control.v1.Artifacts/ListArtifacts", "/refalign.control.v1.Artifacts/PullArtifact", "/refalign.control.v1.Artifacts/PullRun",
    };

    // Compared as SHA-256 digests so the comparison takes the same time whatever the length or content of the guess.
    readonly (byte[] Digest, ApiRole Role)[] _keys;

    public ApiKeyInterceptor(IReadOnlyList<ApiKey> keys) =>
        _keys = [.. keys.Select(k => (SHA256.HashData(Encoding.UTF8.GetBytes(k.Key)), k.Role))];

    /// <summary>One operator key (null or empty: no check).</summary>
    public ApiKeyInterceptor(string? requiredKey)
        : this(string.IsNullOrEmpty(requiredKey) ? [] : [new ApiKey(requiredKey, ApiRole.Operator)])
    {
    }

    public bool Enabled => _keys.Length > 0;

    /// <summary>The role of <paramref name="presented"/>: operator with no keys configured, null for a wrong or missing key.</summary>
    public ApiRole? RoleOf(string? presented)
    {
        if (_keys.Length == 0) return ApiRole.Operator;
        if (presented is null) return null;
        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        ApiRole? role = null;
        // Every key is compared, so the time taken does not tell which one (or whether any) matched.
        foreach (var (key, r) in _keys)
            if (CryptographicOperations.FixedTimeEquals(key, digest)) role = r;
        return role;
    }

    /// <summary>True when <paramref name="presented"/> is acceptable for some call (always, with no key configured).</summary>
    public bool IsAuthorized(string? presented) => RoleOf(presented) is not null;

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, responseStream, context);
    }

    void Check(ServerCallContext context)
    {
        if (_keys.Length == 0 || context.Method.StartsWith("/grpc.health.v1.Health/", StringComparison.Ordinal)) return;
        var presented = context.RequestHeaders.GetValue(Header);
        switch (RoleOf(presented))
        {
            case null:
                throw new RpcException(new Status(StatusCode.Unauthenticated,
                    presented is null ? $"this silo requires an API key ('{Header}' metadata; --api-key or REFALIGN_API_KEY)." : "the API key is not valid."));
            case ApiRole.Viewer when !ReadMethods.Contains(context.Method):
                throw new RpcException(new Status(StatusCode.PermissionDenied,
                    $"this API key is a viewer's: it may get, list, watch, pull and inspect the cluster, not call {context.Method.Split('/')[^1]}."));
        }
    }
}
