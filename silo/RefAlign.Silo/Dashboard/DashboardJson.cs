using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using RefAlign.Contracts.Control;

namespace RefAlign.Silo.Dashboard;

/// <summary>A run as the dashboard's table shows it (the config only in <see cref="RunDetail"/>).</summary>
internal sealed record RunRow(
    string RunId, string Name, string Algorithm, RunStatus Status, int Step, int TotalSteps, long WeightVersion,
    string? LatestCheckpoint, DateTimeOffset CreatedAt, string? Error, IReadOnlyDictionary<string, double> LastMetrics)
{
    public static RunRow Of(RunSummary s) =>
        new(s.RunId, s.Name, s.Algorithm, s.Status, s.Step, s.TotalSteps, s.WeightVersion, s.LatestCheckpoint, s.CreatedAt, s.Error, s.LastMetrics);
}

internal sealed record RunDetail(RunRow Run, JsonNode? Config);

/// <summary>One event of a run's log, as the SSE stream sends it (the run id is in the URL).</summary>
internal sealed record EventRow(
    long Sequence, RunEventKind Kind, int Step, DateTimeOffset Time, RunStatus Status, IReadOnlyDictionary<string, double> Metrics,
    string? Phase, double? PhaseSeconds, string? Message)
{
    public static EventRow Of(RunEvent e) => new(e.Sequence, e.Kind, e.Step, e.Time, e.Status, e.Metrics, e.Phase, e.PhaseSeconds, e.Message);
}

internal sealed record ErrorReply(string Error, string? Reason = null);

internal static class DashboardJson
{
    /// <summary>
    /// snake_case like the CLI's <c>--json</c>; enums as lower-case names. Metrics may be NaN or ±∞ (a diverged loss):
    /// written as strings rather than failing the whole reply.
    /// </summary>
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>The run's config as JSON (null if it does not parse, which an admitted config always does).</summary>
    public static JsonNode? Config(string configJson)
    {
        try { return JsonNode.Parse(configJson); }
        catch (JsonException) { return null; }
    }
}
