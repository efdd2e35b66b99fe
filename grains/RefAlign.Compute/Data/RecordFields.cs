using System.Text.Json;
using System.Text.Json.Nodes;

namespace RefAlign.Compute.Data;

/// <summary>One chat message of a conversation-style field (UltraFeedback's <c>{"content","role"}</c>).</summary>
internal sealed record ChatMessage(string Role, string Content);

/// <summary>
/// Typed access to a record's fields. Every failure is a <see cref="ModelFormatException"/> worded
/// <c>LOCATION: field 'NAME' PROBLEM</c>, so a bad line can be found and fixed without a debugger.
/// </summary>
internal static class RecordFields
{
    public static ModelFormatException Error(string location, string field, string problem) =>
        new($"{location}: field '{field}' {problem}");

    public static bool Has(JsonObject record, string field) => record.TryGetPropertyValue(field, out var node) && node is not null;

    public static string String(JsonObject record, string field, string location) =>
        AsString(Require(record, field, location), field, location);

    /// <summary>A string that is not empty or whitespace only.</summary>
    public static string NonEmptyString(JsonObject record, string field, string location)
    {
        var value = String(record, field, location);
        return string.IsNullOrWhiteSpace(value) ? throw Error(location, field, "is empty") : value;
    }

    /// <summary>A non-empty string, or a number as its JSON text (a verifiable answer may be either).</summary>
    public static string ScalarText(JsonObject record, string field, string location)
    {
        var node = Require(record, field, location);
        var text = node.GetValueKind() switch
        {
            JsonValueKind.String => node.GetValue<string>(),
            JsonValueKind.Number => node.ToJsonString(),
            _ => throw Error(location, field, $"must be a string or a number, found {DatasetFile.Describe(node)}"),
        };
        return string.IsNullOrWhiteSpace(text) ? throw Error(location, field, "is empty") : text;
    }

    public static bool Bool(JsonObject record, string field, string location)
    {
        var node = Require(record, field, location);
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(location, field, $"must be a boolean, found {DatasetFile.Describe(node)}"),
        };
    }

    /// <summary>An optional boolean: absent or null gives <paramref name="fallback"/>.</summary>
    public static bool OptionalBool(JsonObject record, string field, string location, bool fallback) =>
        Has(record, field) ? Bool(record, field, location) : fallback;

    public static long Integer(JsonObject record, string field, string location)
    {
        var node = Require(record, field, location);
        if (node.GetValueKind() == JsonValueKind.Number && node is JsonValue value)
        {
            if (value.TryGetValue<long>(out var l))
            {
                return l;
            }
            if (value.TryGetValue<double>(out var d) && Math.Floor(d) == d && Math.Abs(d) < 9e15)
            {
                return (long)d;
            }
            if (value.TryGetValue<decimal>(out var m) && decimal.Truncate(m) == m && Math.Abs(m) < 9e15m)
            {
                return (long)m;
            }
            throw Error(location, field, $"must be an integer, found {node.ToJsonString()}");
        }
        throw Error(location, field, $"must be an integer, found {DatasetFile.Describe(node)}");
    }

    /// <summary>An index into a two-element choice (PKU's <c>better_response_id</c> / <c>safer_response_id</c>).</summary>
    public static int ZeroOrOne(JsonObject record, string field, string location)
    {
        var id = Integer(record, field, location);
        return id is 0 or 1 ? (int)id : throw Error(location, field, $"must be 0 or 1, found {id}");
    }

    /// <summary>A list of <c>{"content": string, "role": string}</c> objects; extra keys are ignored.</summary>
    public static IReadOnlyList<ChatMessage> Messages(JsonObject record, string field, string location)
    {
        var node = Require(record, field, location);
        if (node is not JsonArray array)
        {
            throw Error(location, field, $"must be a list of {{\"content\", \"role\"}} messages, found {DatasetFile.Describe(node)}");
        }
        var messages = new List<ChatMessage>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            var name = $"{field}[{i}]";
            if (array[i] is not JsonObject message)
            {
                throw Error(location, name, $"must be a {{\"content\", \"role\"}} object, found {DatasetFile.Describe(array[i])}");
            }
            messages.Add(new ChatMessage(String(message, "role", location, name), String(message, "content", location, name)));
        }
        return messages;
    }

    /// <summary>The content of the last message whose role is <c>assistant</c>.</summary>
    public static string LastAssistantContent(JsonObject record, string field, string location)
    {
        var messages = Messages(record, field, location);
        for (var i = messages.Count - 1; i >= 0; i--)
        {
            if (messages[i].Role == "assistant")
            {
                return messages[i].Content;
            }
        }
        throw Error(location, field, $"has no message with role 'assistant' ({messages.Count} message(s))");
    }

    private static string String(JsonObject record, string field, string location, string parent) =>
        AsString(Require(record, field, location, $"{parent}.{field}"), $"{parent}.{field}", location);

    private static JsonNode Require(JsonObject record, string field, string location, string? displayName = null)
    {
        if (!record.TryGetPropertyValue(field, out var node))
        {
            throw Error(location, displayName ?? field, "is missing");
        }
        return node ?? throw Error(location, displayName ?? field, "is null");
    }

    private static string AsString(JsonNode node, string field, string location) =>
        node.GetValueKind() == JsonValueKind.String
            ? node.GetValue<string>()
            : throw Error(location, field, $"must be a string, found {DatasetFile.Describe(node)}");
}
