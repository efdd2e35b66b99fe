using System.CommandLine;
using System.Globalization;
using System.Net.Http;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Grpc.Core;
using RefAlign.Client;

namespace RefAlign.Cli.Commands;

/// <summary>Shared pieces of the verbs that talk to a silo: --silo/--api-key, the client, error reporting, JSON shapes.</summary>
internal static class RemoteSupport
{
    public const string DefaultSilo = "http://127.0.0.1:5080";

    /// <summary>Exit code of a gRPC error the silo answered with (bad config, unknown run, bad key...).</summary>
    public const int ExitError = 2;

    /// <summary>Exit code when the silo cannot be reached at all.</summary>
    public const int ExitUnreachable = 3;

    // Recursive: given on the group command (`refalign run --silo URL status ID`) or on the verb itself.
    public static Option<string> SiloOption() => new("--silo")
    {
        Description = $"The silo's gRPC address (env REFALIGN_SILO, default {DefaultSilo}).",
        Recursive = true,
        DefaultValueFactory = _ => Env("REFALIGN_SILO") ?? DefaultSilo,
    };

    public static Option<string?> ApiKeyOption() => new("--api-key")
    {
        Description = "API key sent as x-api-key (env REFALIGN_API_KEY).",
        Recursive = true,
        DefaultValueFactory = _ => Env("REFALIGN_API_KEY"),
    };

    /// <summary>--ca-cert, shared by the remote command groups (run, cluster).</summary>
    public static Option<string?> CaCert { get; } = CaCertOption();

    static Option<string?> CaCertOption() => new("--ca-cert")
    {
        Description = "PEM file of the CA that issued the silo's TLS certificate, for https:// silos (env REFALIGN_CA_CERT).",
        Recursive = true,
        DefaultValueFactory = _ => Env("REFALIGN_CA_CERT"),
    };

    static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;

    public static RefAlignClient Connect(ParseResult r, Option<string> silo, Option<string?> apiKey)
    {
        var address = r.GetValue(silo)!;
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--silo '{address}' is not an http:// or https:// URL.");
        return new RefAlignClient(new RefAlignClientOptions { Address = uri, ApiKey = r.GetValue(apiKey), CaCertificatePath = r.GetValue(CaCert) });
    }

    /// <summary>
    /// Runs a remote verb: a gRPC error becomes one line on stderr ("error: not found: run 'x' does not exist.") and exit
    /// code 2; an unreachable silo exit code 3; never a stack trace.
    /// </summary>
    public static async Task<int> RunAsync(string silo, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable || IsConnectFailure(e))
        {
            Console.Error.WriteLine($"error: silo unreachable at {silo}: {Cause(e)}");
            return ExitUnreachable;
        }
        catch (RpcException e)
        {
            Console.Error.WriteLine($"error: {RpcErrors.Describe(e.StatusCode)}: {Detail(e)}");
            return ExitError;
        }
        catch (Exception e) when (e is HttpRequestException or SocketException)
        {
            Console.Error.WriteLine($"error: silo unreachable at {silo}: {e.Message}");
            return ExitUnreachable;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitError;
        }
    }

    // A connect timeout shows up as DEADLINE_EXCEEDED or CANCELLED with a socket cause.
    static bool IsConnectFailure(RpcException e)
    {
        for (Exception? x = e.Status.DebugException; x is not null; x = x.InnerException)
            if (x is SocketException or HttpRequestException) return true;
        return false;
    }

    // "Error connecting to subchannel." says less than the socket error under it ("Connection refused (127.0.0.1:5080)").
    static string Cause(RpcException e)
    {
        var inner = e.Status.DebugException;
        while (inner?.InnerException is not null) inner = inner.InnerException;
        return inner is null ? Detail(e) : Sentence(inner.Message);
    }

    static string Detail(RpcException e)
    {
        var d = e.Status.Detail;
        if (string.IsNullOrWhiteSpace(d)) d = e.Status.DebugException?.Message ?? e.StatusCode.ToString();
        return Sentence(d);
    }

    static string Sentence(string s)
    {
        s = s.TrimEnd();
        return s.EndsWith('.') || s.EndsWith(')') ? s : s + ".";
    }

    public static string StatusName(RunStatus s) => s.ToString().ToLowerInvariant();

    public static string Metric(double v) => Math.Abs(v) is >= 1e4 or (< 1e-3 and > 0)
        ? v.ToString("0.###e0", CultureInfo.InvariantCulture)
        : v.ToString("0.####", CultureInfo.InvariantCulture);

    /// <summary>The run as <c>--json</c> prints it (snake_case; the config as a JSON object when it parses).</summary>
    public static object RunJson(RunSummary r) => new
    {
        run_id = r.RunId,
        name = r.Name,
        algorithm = r.Algorithm,
        status = StatusName(r.Status),
        step = r.Step,
        total_steps = r.TotalSteps,
        weight_version = r.WeightVersion,
        latest_checkpoint = r.LatestCheckpoint,
        created_at = r.CreatedAt,
        error = r.Error,
        last_metrics = r.LastMetrics,
        config = ParseOrNull(r.ConfigJson),
    };

    public static object EventJson(RunEvent e) => new
    {
        run_id = e.RunId,
        sequence = e.Sequence,
        kind = e.Kind.ToString().ToLowerInvariant(),
        step = e.Step,
        time = e.Time,
        status = StatusName(e.Status),
        metrics = e.Metrics,
        phase = e.Phase,
        phase_seconds = e.PhaseSeconds,
        message = e.Message,
    };

    static JsonNode? ParseOrNull(string json)
    {
        try
        {
            return string.IsNullOrWhiteSpace(json) ? null : JsonNode.Parse(json);
        }
        catch (System.Text.Json.JsonException)
        {
            return JsonValue.Create(json);
        }
    }
}
