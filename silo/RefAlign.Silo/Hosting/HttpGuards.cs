using System.Net;
using RefAlign.Silo.Control;

namespace RefAlign.Silo.Hosting;

/// <summary>
/// What every HTTP response of the silo carries, and who may read <c>/metrics</c>. The dashboard loads only its own
/// files (no inline script, no CDN), so the content security policy can be <c>default-src 'self'</c>; no page of the
/// silo may be framed, sniffed into another type, or leak its URL (which may carry a key) as a referrer.
/// </summary>
public static class HttpGuards
{
    public const string ContentSecurityPolicy = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'";

    // The Orleans Dashboard (its own port, off by default) draws with inline styles and data: images.
    const string OrleansDashboardPolicy = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; base-uri 'none'; object-src 'none'; frame-ancestors 'none'";

    public const string MetricsPath = "/metrics";

    /// <summary>Adds the headers to every response and keeps <c>/metrics</c> to those <see cref="MayReadMetrics"/> allows.</summary>
    public static void UseHttpGuards(this WebApplication app)
    {
        var silo = app.Services.GetRequiredService<SiloOptions>();
        var keys = app.Services.GetRequiredService<ApiKeyInterceptor>();
        app.Use(async (http, next) =>
        {
            var headers = http.Response.Headers;
            headers.ContentSecurityPolicy = silo.DashboardEnabled && http.Connection.LocalPort == silo.DashboardPort ? OrleansDashboardPolicy : ContentSecurityPolicy;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers["Referrer-Policy"] = "no-referrer";
            var metrics = http.Request.Path.StartsWithSegments(MetricsPath, StringComparison.Ordinal);
            // The metrics listener serves nothing else.
            if (silo.MetricsPort != 0 && http.Connection.LocalPort == silo.MetricsPort && !metrics)
            {
                http.Response.StatusCode = StatusCodes.Status404NotFound;
                return;
            }
            if (metrics && !MayReadMetrics(http, silo, keys))
            {
                http.Response.StatusCode = StatusCodes.Status401Unauthorized;
                headers.WWWAuthenticate = "Bearer realm=\"refalign-metrics\"";
                await http.Response.WriteAsync(
                    "/metrics names every run and its numbers: from beyond loopback it needs an API key (Authorization: Bearer <key>, a viewer's is enough), or Silo:MetricsPort on an address only Prometheus reaches.\n");
                return;
            }
            await next(http);
        });
    }

    /// <summary>
    /// <c>/metrics</c> is open on loopback and on the operator's own metrics listener (<c>Silo:MetricsPort</c>); anywhere
    /// else it takes an API key of any role, as Prometheus' <c>authorization</c> block sends it (<c>Bearer</c>) or as
    /// <c>x-api-key</c>. A silo with no key configured (loopback, or <c>Silo:AllowAnonymous</c>) asks for none.
    /// </summary>
    public static bool MayReadMetrics(HttpContext http, SiloOptions silo, ApiKeyInterceptor keys)
    {
        if (http.Connection.LocalIpAddress is { } local && IPAddress.IsLoopback(local)) return true;
        if (silo.MetricsPort != 0 && http.Connection.LocalPort == silo.MetricsPort) return true;
        var authorization = http.Request.Headers.Authorization.FirstOrDefault();
        var presented = authorization is not null && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            ? authorization["Bearer ".Length..].Trim()
            : http.Request.Headers[ApiKeyInterceptor.Header].FirstOrDefault();
        return keys.RoleOf(string.IsNullOrEmpty(presented) ? null : presented) is not null;
    }
}
