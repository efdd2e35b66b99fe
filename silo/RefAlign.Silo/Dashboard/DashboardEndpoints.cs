using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Silo.Control;

namespace RefAlign.Silo.Dashboard;

/// <summary>
/// The run dashboard: a static page (<c>/</c>, <c>/dashboard/*</c>) and the JSON and server-sent-event endpoints it
/// reads (<c>/api/*</c>), all over <see cref="IRunControl"/>, like the gRPC service. The page holds no data, so it needs
/// no key; the API takes the control API's keys (any role: every endpoint only reads).
/// </summary>
internal static class DashboardEndpoints
{
    /// <summary>EventSource cannot send headers: the events stream also takes the key as <c>?key=</c>.</summary>
    public const string KeyQuery = "key";

    /// <summary>Maps the dashboard; <paramref name="about"/> answers <c>/</c> for clients that do not ask for HTML.</summary>
    public static RouteGroupBuilder MapDashboard(this IEndpointRouteBuilder app, Func<HttpContext, IResult> about)
    {
        var group = app.MapGroup("");
        group.MapGet("/", (HttpContext http) => WantsHtml(http.Request) ? DashboardAssets.Serve("index.html") : about(http));
        group.MapGet("/dashboard/{file}", (string file) => DashboardAssets.Serve(file));

        var api = group.MapGroup("/api").AddEndpointFilter(RequireKey);
        api.MapGet("/runs", async (IRunControl control, CancellationToken ct) =>
            Json((await control.ListRunsAsync(ct)).OrderByDescending(r => r.CreatedAt).Select(RunRow.Of).ToList()));
        api.MapGet("/runs/{id}", async (string id, IRunControl control, CancellationToken ct) =>
        {
            var run = await control.GetRunAsync(id, ct);
            return Json(new RunDetail(RunRow.Of(run), DashboardJson.Config(run.ConfigJson)));
        });
        api.MapGet("/runs/{id}/events", StreamEvents);
        api.MapGet("/cluster", async (IRunControl control, CancellationToken ct) => Json(await control.GetClusterAsync(ct)));
        return group;
    }

    /// <summary>Browsers ask for text/html first; curl and probes get the one-line description as before.</summary>
    static bool WantsHtml(HttpRequest request) =>
        request.GetTypedHeaders().Accept.Any(a => a.MediaType.Equals("text/html", StringComparison.OrdinalIgnoreCase));

    static IResult Json<T>(T value) => Results.Text(DashboardJson.Serialize(value), "application/json; charset=utf-8");

    static IResult Error(int status, string message, string? reason = null) =>
        Results.Text(DashboardJson.Serialize(new ErrorReply(message, reason)), "application/json; charset=utf-8", statusCode: status);

    /// <summary>The same keys and messages as <see cref="ApiKeyInterceptor"/>; the control layer's errors as HTTP statuses.</summary>
    static async ValueTask<object?> RequireKey(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var keys = http.RequestServices.GetRequiredService<ApiKeyInterceptor>();
        string? presented = http.Request.Headers[ApiKeyInterceptor.Header].FirstOrDefault();
        // Only the stream reads the query: a key in a URL ends up in histories and logs, so only where no header can go.
        if (presented is null && http.Request.Path.Value?.EndsWith("/events", StringComparison.Ordinal) == true)
            presented = http.Request.Query[KeyQuery].FirstOrDefault();
        if (string.IsNullOrEmpty(presented)) presented = null;
        if (keys.RoleOf(presented) is null)
        {
            return presented is null
                ? Error(StatusCodes.Status401Unauthorized, "this silo requires an API key (a viewer's or an operator's, as for --api-key).", "missing")
                : Error(StatusCodes.Status401Unauthorized, "the API key is not valid.", "invalid");
        }
        try
        {
            return await next(context);
        }
        catch (RunNotFoundException e)
        {
            return Error(StatusCodes.Status404NotFound, e.Message);
        }
        catch (Exception e) when (ClusterFaults.IsTransient(e) && !http.RequestAborted.IsCancellationRequested)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, $"the cluster could not answer right now ({e.GetType().Name}); retry.");
        }
    }

    /// <summary>
    /// The run's events as server-sent events (<c>event: run</c>, id = sequence), from <c>?after=</c> or the browser's
    /// <c>Last-Event-ID</c>, then live ones; <c>event: end</c> once the run has ended, so the page stops reconnecting.
    /// A transient fault just ends the response: EventSource reconnects and resumes after the last id it saw.
    /// </summary>
    static async Task<IResult> StreamEvents(string id, HttpContext http, IRunControl control, long? after)
    {
        var ct = http.RequestAborted;
        await control.GetRunAsync(id, ct); // an unknown run is a 404, not an empty stream
        var last = after ?? 0;
        if (long.TryParse(http.Request.Headers["Last-Event-ID"].FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out var resumed))
            last = resumed;
        if (last < 0) return Error(StatusCodes.Status400BadRequest, "'after' must be ≥ 0.");

        var response = http.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await Write(response, "retry: 2000\n\n", ct);
        try
        {
            while (true)
            {
                try
                {
                    await foreach (var e in control.WatchRunAsync(id, last, ct).WithCancellation(ct))
                    {
                        last = e.Sequence;
                        await Write(response, $"id: {e.Sequence}\nevent: run\ndata: {DashboardJson.Serialize(EventRow.Of(e))}\n\n", ct);
                    }
                    await Write(response, "event: end\ndata: {}\n\n", ct);
                    break;
                }
                catch (RunEventsTrimmedException e)
                {
                    // Older events fell out of the run's bounded log: say so, and go on from the oldest kept.
                    await Write(response, $"event: trimmed\ndata: {{\"oldest_sequence\":{e.OldestSequence}}}\n\n", ct);
                    last = e.OldestSequence - 1;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e) when (ClusterFaults.IsTransient(e) || e is OperationCanceledException) { }
        return Results.Empty;
    }

    static async Task Write(HttpResponse response, string text, CancellationToken ct)
    {
        await response.WriteAsync(text, ct);
        await response.Body.FlushAsync(ct);
    }
}
