using System.Text.Json.Serialization;

namespace RefAlign.Compute.Tokenization;

/// <summary>
/// <c>policy.chat_template</c>: <see cref="Auto"/> uses the model's own template (tokenizer_config.json), else no
/// template; <see cref="None"/> the prompt text as is; <see cref="Zephyr"/> the built-in Zephyr format.
/// </summary>
/// <remarks>Values are fixed (not declaration order): persisted run configs carry them.</remarks>
[JsonConverter(typeof(SnakeCaseEnumConverter<ChatTemplate>))]
public enum ChatTemplate
{
    [JsonStringEnumMemberName("none")] None = 0,
    [JsonStringEnumMemberName("zephyr")] Zephyr = 1,
    [JsonStringEnumMemberName("auto")] Auto = 2,
}

/// <summary>Turns a <see cref="ChatTemplate"/> setting into the <see cref="ChatFormat"/> prompts are written in.</summary>
public static class ChatTemplates
{
    public static IReadOnlyList<string> Names => SnakeCaseEnumConverter<ChatTemplate>.Names;

    /// <summary>The families <c>auto</c> recognises, for messages and docs.</summary>
    public const string KnownFamilies = "ChatML/Qwen2, Llama-2, Llama-3, Mistral-Instruct, Zephyr, Gemma";

    /// <summary>
    /// The format for <paramref name="template"/> with <paramref name="tokenizer"/>'s model: for <c>auto</c>, the model
    /// folder's template (rendered with its BOS/EOS strings), or no template when it has none. Throws
    /// <see cref="ModelFormatException"/> naming the file when the model's template is not one RefAlign knows.
    /// </summary>
    public static ChatFormat Resolve(ChatTemplate template, TextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return template switch
        {
            ChatTemplate.Zephyr => ChatFormat.BuiltInZephyr,
            ChatTemplate.Auto when FromModel(tokenizer.Folder) is { } f =>
                f with { Bos = tokenizer.BosToken ?? "", Eos = tokenizer.EosToken ?? "" },
            _ => ChatFormat.None,
        };
    }

    /// <summary>By name (<c>auto</c>, <c>none</c>, <c>zephyr</c>), as the CLI's <c>--chat-template</c> gives it.</summary>
    public static ChatFormat Resolve(string template, TextTokenizer tokenizer) =>
        SnakeCaseEnumConverter<ChatTemplate>.TryParse(template, out var t)
            ? Resolve(t, tokenizer)
            : throw new ArgumentException($"Unknown chat template '{template}'; known templates: {string.Join(", ", Names)}.", nameof(template));

    /// <summary>
    /// The recognised family of the model folder's template (BOS/EOS not filled in), or null when the folder has no
    /// template. Throws <see cref="ModelFormatException"/> naming the file when it has one RefAlign does not know.
    /// </summary>
    public static ChatFormat? FromModel(string folder)
    {
        if (ModelChatTemplate.Read(folder) is not { } model) return null;
        return model.Recognize() ?? throw new ModelFormatException(
            $"{model.Source}: chat_template is not a template RefAlign recognises ({KnownFamilies}). Set policy.chat_template " +
            "(or --chat-template) to none or zephyr to choose the prompt format yourself.");
    }

    /// <summary>
    /// A rendered prompt as token ids: the tokenizer's special tokens added, but no second BOS where the template
    /// already wrote one (Llama, Mistral, Gemma templates start with bos_token).
    /// </summary>
    public static IReadOnlyList<int> Encode(TextTokenizer tokenizer, string rendered)
    {
        var ids = tokenizer.Encode(rendered);
        return tokenizer.AddBosToken && tokenizer.BosId is int bos && ids.Count >= 2 && ids[0] == bos && ids[1] == bos ? [.. ids.Skip(1)] : ids;
    }
}
