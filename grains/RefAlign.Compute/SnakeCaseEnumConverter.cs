using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace RefAlign.Compute;

/// <summary>
/// A closed set of values written as the lower-case strings users type in run configs (each member's
/// <see cref="JsonStringEnumMemberNameAttribute"/>); anything else fails with the list of allowed values, which the
/// config parser reports with the field's path.
/// </summary>
public sealed class SnakeCaseEnumConverter<T> : JsonConverter<T> where T : struct, Enum
{
    static readonly (T Value, string Name)[] Members = [.. Enum.GetValues<T>().Select(v => (v, NameOf(v)))];

    /// <summary>The JSON names, in declaration order.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Members.Select(m => m.Name)];

    public static string NameOf(T value) =>
        typeof(T).GetField(value.ToString())?.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name
        ?? value.ToString().ToLowerInvariant();

    public static bool TryParse(string? text, out T value)
    {
        foreach (var (v, name) in Members)
        {
            if (name == text)
            {
                value = v;
                return true;
            }
        }
        value = default;
        return false;
    }

    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var text = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        return TryParse(text, out var value)
            ? value
            : throw new JsonException($"must be one of {string.Join(", ", Names)}" + (text is null ? $" (a string, got {reader.TokenType})" : $" (got '{text}')"));
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(NameOf(value));
}
