using System.Text.Json.Serialization;

namespace RefAlign.Compute.Tokenization;

/// <summary>A prompt format for a single user turn.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<ChatTemplate>))]
public enum ChatTemplate
{
    [JsonStringEnumMemberName("none")] None,
    [JsonStringEnumMemberName("zephyr")] Zephyr,
}

/// <summary>Prompt formats for a single user turn, ending where the assistant's reply starts.</summary>
public static class ChatTemplates
{
    public static IReadOnlyList<string> Names => SnakeCaseEnumConverter<ChatTemplate>.Names;

    public static string Apply(ChatTemplate template, string userMessage)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        return template switch
        {
            ChatTemplate.Zephyr => $"<|user|>\n{userMessage}</s>\n<|assistant|>\n",
            _ => userMessage,
        };
    }

    /// <summary>What <see cref="Apply(ChatTemplate, string)"/> puts before the user's message (the turn's header).</summary>
    public static string Header(ChatTemplate template) => template switch
    {
        ChatTemplate.Zephyr => "<|user|>\n",
        _ => "",
    };

    /// <summary>By name (<c>zephyr</c>, <c>none</c>), as the CLI's <c>--chat-template</c> gives it.</summary>
    public static string Apply(string template, string userMessage) =>
        SnakeCaseEnumConverter<ChatTemplate>.TryParse(template, out var t)
            ? Apply(t, userMessage)
            : throw new ArgumentException($"Unknown chat template '{template}'; known templates: {string.Join(", ", Names)}.", nameof(template));
}
