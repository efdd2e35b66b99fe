using System.Net;
using Microsoft.AspNetCore.Http;
using RefAlign.Silo.Control;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Every HTTP response of a silo carries the security headers; <c>/metrics</c> is open on loopback and on its own
/// listener, and from anywhere else takes an API key as Prometheus' <c>authorization</c> block sends it.
/// </summary>
public sealed class HttpGuardsTests(SiloHostFixture silo) : IClassFixture<SiloHostFixture>
{
    [Theory]
    [InlineData("/healthz")]
    [InlineData("/")]
    [InlineData("/dashboard/dashboard.js")]
    [InlineData("/api/runs")]
    [InlineData("/metrics")]
    [InlineData("/no-such-page")]
    public async Task Every_response_carries_the_security_headers(string path)
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{silo.HttpPort}{path}");
        request.Headers.Accept.ParseAdd("text/html");
        using var response = await http.SendAsync(request);
        string Header(string name) => response.Headers.TryGetValues(name, out var v) ? string.Join(",", v) : "";
        Assert.Equal(HttpGuards.ContentSecurityPolicy, Header("Content-Security-Policy"));
        Assert.Contains("default-src 'self'", Header("Content-Security-Policy"));
        Assert.Contains("frame-ancestors 'none'", Header("Content-Security-Policy"));
        Assert.Equal("nosniff", Header("X-Content-Type-Options"));
        Assert.Equal("DENY", Header("X-Frame-Options"));
        Assert.Equal("no-referrer", Header("Referrer-Policy"));
    }

    [Fact]
    public async Task Metrics_are_open_on_loopback()
    {
        using var http = new HttpClient();
        using var response = await http.GetAsync($"http://127.0.0.1:{silo.HttpPort}/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    static HttpContext Request(string local, string? authorization = null, int port = 5081)
    {
        var http = new DefaultHttpContext();
        http.Connection.LocalIpAddress = IPAddress.Parse(local);
        http.Connection.LocalPort = port;
        if (authorization is not null) http.Request.Headers.Authorization = authorization;
        return http;
    }

    [Fact]
    public void Beyond_loopback_metrics_take_a_key_of_any_role_or_their_own_listener()
    {
        const string viewer = "viewer-key-0123456789", op = "operator-key-0123456789";
        var keys = new ApiKeyInterceptor([new ApiKey(viewer, ApiRole.Viewer), new ApiKey(op, ApiRole.Operator)]);
        var options = new SiloOptions();
        Assert.True(HttpGuards.MayReadMetrics(Request("127.0.0.1"), options, keys));
        Assert.True(HttpGuards.MayReadMetrics(Request("::1"), options, keys));
        Assert.False(HttpGuards.MayReadMetrics(Request("10.1.2.3"), options, keys));
        Assert.False(HttpGuards.MayReadMetrics(Request("10.1.2.3", "Bearer not-a-key-xxxxxxxx"), options, keys));
        Assert.False(HttpGuards.MayReadMetrics(Request("10.1.2.3", $"Basic {viewer}"), options, keys));
        Assert.True(HttpGuards.MayReadMetrics(Request("10.1.2.3", $"Bearer {viewer}"), options, keys));
        Assert.True(HttpGuards.MayReadMetrics(Request("10.1.2.3", $"Bearer {op}"), options, keys));
        // Its own listener, on an address the operator chose for Prometheus: open.
        Assert.True(HttpGuards.MayReadMetrics(Request("10.1.2.3", port: 9464), options with { MetricsPort = 9464 }, keys));
        // No key configured (Silo:AllowAnonymous beyond loopback): nothing to ask for.
        Assert.True(HttpGuards.MayReadMetrics(Request("10.1.2.3"), options, new ApiKeyInterceptor((string?)null)));
    }
}
