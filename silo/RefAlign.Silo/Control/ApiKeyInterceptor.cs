using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RefAlign.Silo.Control;

/// <summary>
/// Optional API-key authentication for every gRPC call: with a key configured, a call whose <c>x-api-key</c> metadata is
/// missing or different fails with UNAUTHENTICATED before it reaches the service. A null or empty key turns the check off,
/// so a host can always register it: <c>services.AddGrpc(o =&gt; o.Interceptors.Add&lt;ApiKeyInterceptor&gt;(key ?? ""))</c>.
/// </summary>
public sealed class ApiKeyInterceptor(string? requiredKey) : Interceptor
{
    /// <summary>The metadata key clients send the API key in (lower case, as HTTP/2 headers are).</summary>
    public const string Header = "x-api-key";

    // Compared as SHA-256 digests so the comparison takes the same time whatever the length or content of the guess.
    readonly byte[]? _required = string.IsNullOrEmpty(requiredKey) ? null : SHA256.HashData(Encoding.UTF8.GetBytes(requiredKey));

    public bool Enabled => _required is not null;

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

    /// <summary>True when <paramref name="presented"/> is acceptable (always, with no key configured).</summary>
    public bool IsAuthorized(string? presented)
    {
        if (_required is null) return true;
        if (presented is null) return false;
        return CryptographicOperations.FixedTimeEquals(_required, SHA256.HashData(Encoding.UTF8.GetBytes(presented)));
    }

    void Check(ServerCallContext context)
    {
        if (_required is null) return;
        var presented = context.RequestHeaders.GetValue(Header);
        if (!IsAuthorized(presented))
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                presented is null ? $"this silo requires an API key ('{Header}' metadata; --api-key or REFALIGN_API_KEY)." : "the API key is not valid."));
    }
}
