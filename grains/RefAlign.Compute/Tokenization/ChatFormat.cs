namespace RefAlign.Compute.Tokenization;

/// <summary>One turn of a conversation: <c>system</c>, <c>user</c> or <c>assistant</c>.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>The chat formats RefAlign renders itself (no Jinja engine): each is one model family's template.</summary>
public enum ChatFamily { None, ChatMl, Llama2, Llama3, Mistral, Zephyr, Gemma }

/// <summary>
/// Mistral-Instruct's template forms: <see cref="Plain"/> (Mixtral, v0.2 before 2024: <c>[INST] u [/INST]a&lt;/s&gt;</c>),
/// <see cref="SpaceAfterEos"/> (v0.1 before 2024: a space after each answer's EOS), <see cref="SystemAware"/> (v0.1/v0.2
/// since 2024: <c> [INST] u [/INST] a&lt;/s&gt;</c>, the system message in front of the first user turn).
/// </summary>
public enum MistralForm { Plain, SpaceAfterEos, SystemAware }

/// <summary>
/// A chat format: renders a conversation exactly as the family's Jinja chat template does (HF's trim_blocks and
/// lstrip_blocks), with the model's <paramref name="Bos"/> and <paramref name="Eos"/> token strings.
/// </summary>
/// <param name="DefaultSystem">ChatML: the system turn the template adds when the conversation has none (Qwen2's
/// "You are a helpful assistant.").</param>
public sealed record ChatFormat(
    ChatFamily Family, string Bos = "", string Eos = "", string? DefaultSystem = null, MistralForm Mistral = MistralForm.Plain)
{
    public static readonly ChatFormat None = new(ChatFamily.None);

    /// <summary>The built-in <c>zephyr</c> format: the Zephyr template with EOS <c>&lt;/s&gt;</c>.</summary>
    public static readonly ChatFormat BuiltInZephyr = new(ChatFamily.Zephyr, Eos: "</s>");

    /// <summary>Where the template came from (the tokenizer_config.json path), for messages; null for built-in formats.</summary>
    public string? Source { get; init; }

    /// <summary>A single user turn followed by the generation prompt: the prompt text a policy continues.</summary>
    public string Prompt(string userMessage)
    {
        ArgumentNullException.ThrowIfNull(userMessage);
        return Render([new("user", userMessage)], addGenerationPrompt: true);
    }

    /// <summary>What <see cref="Prompt"/> puts before the user's message (BOS and the turn's header).</summary>
    public string Header
    {
        get
        {
            // A marker without whitespace, so the trim/strip some templates apply to the content cannot move it.
            const string marker = "\u0001refalign-user\u0001";
            var text = Prompt(marker);
            return text[..text.IndexOf(marker, StringComparison.Ordinal)];
        }
    }

    /// <summary>The conversation as the family's template renders it; throws where the template raises.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        ArgumentNullException.ThrowIfNull(messages);
        foreach (var m in messages)
            if (m.Role is not ("system" or "user" or "assistant"))
                throw new ArgumentException($"Unknown chat role '{m.Role}': use system, user or assistant.", nameof(messages));
        var b = new System.Text.StringBuilder();
        var (system, turns) = messages.Count > 0 && messages[0].Role == "system" ? (messages[0].Content, messages.Skip(1).ToList()) : (null, messages.ToList());
        switch (Family)
        {
            case ChatFamily.None:
                // No markup: the text as is (the messages' contents, one after another).
                foreach (var m in messages) b.Append(m.Content);
                break;

            case ChatFamily.ChatMl:
                // {% if loop.first and messages[0]['role'] != 'system' %}default system{% endif %}
                // '<|im_start|>' + role + '\n' + content + '<|im_end|>\n' … then '<|im_start|>assistant\n'.
                if (messages.Count > 0 && system is null && DefaultSystem is not null)
                    b.Append($"<|im_start|>system\n{DefaultSystem}<|im_end|>\n");
                foreach (var m in messages) b.Append($"<|im_start|>{m.Role}\n{m.Content}<|im_end|>\n");
                if (addGenerationPrompt) b.Append("<|im_start|>assistant\n");
                break;

            case ChatFamily.Llama2:
                // The system message rides in the first user turn; both sides are strip()ped; no generation prompt.
                Alternate(turns);
                for (var i = 0; i < turns.Count; i++)
                {
                    var content = i == 0 && system is not null ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{turns[i].Content}" : turns[i].Content;
                    b.Append(turns[i].Role == "user" ? $"{Bos}[INST] {PyStrip(content)} [/INST]" : $" {PyStrip(content)} {Eos}");
                }
                break;

            case ChatFamily.Llama3:
                // bos_token before the first turn; each turn's content | trim; a system turn is an ordinary turn.
                for (var i = 0; i < messages.Count; i++)
                    b.Append(i == 0 ? Bos : "").Append($"<|start_header_id|>{messages[i].Role}<|end_header_id|>\n\n{PyStrip(messages[i].Content)}<|eot_id|>");
                if (addGenerationPrompt) b.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;

            case ChatFamily.Mistral:
                if (system is not null && Mistral != MistralForm.SystemAware)
                    throw new ArgumentException("This Mistral template supports only user and assistant roles (its template raises on a system message).");
                Alternate(turns);
                b.Append(Bos);
                for (var i = 0; i < turns.Count; i++)
                {
                    var t = turns[i];
                    b.Append((Mistral, t.Role) switch
                    {
                        (MistralForm.SystemAware, "user") when i == 0 && system is not null => $" [INST] {system}\n\n{t.Content} [/INST]",
                        (MistralForm.SystemAware, "user") => $" [INST] {t.Content} [/INST]",
                        (MistralForm.SystemAware, _) => $" {t.Content}{Eos}",
                        (_, "user") => $"[INST] {t.Content} [/INST]",
                        (MistralForm.SpaceAfterEos, _) => $"{t.Content}{Eos} ",
                        _ => $"{t.Content}{Eos}",
                    });
                }
                break;

            case ChatFamily.Zephyr:
                // '<|role|>\n' + content + eos_token, each followed by the template's newline; then '<|assistant|>\n'.
                foreach (var m in messages) b.Append($"<|{m.Role}|>\n{m.Content}{Eos}\n");
                if (addGenerationPrompt && messages.Count > 0) b.Append("<|assistant|>\n");
                break;

            case ChatFamily.Gemma:
                if (system is not null)
                    throw new ArgumentException("This Gemma template does not support a system message (its template raises 'System role not supported').");
                Alternate(turns);
                b.Append(Bos);
                foreach (var t in turns)
                    b.Append($"<start_of_turn>{(t.Role == "assistant" ? "model" : t.Role)}\n{PyStrip(t.Content)}<end_of_turn>\n");
                if (addGenerationPrompt) b.Append("<start_of_turn>model\n");
                break;
        }
        return b.ToString();
    }

    /// <summary>The check the Llama-2, Mistral and Gemma templates make (after an optional system message).</summary>
    static void Alternate(List<ChatMessage> turns)
    {
        for (var i = 0; i < turns.Count; i++)
            if ((turns[i].Role == "user") != (i % 2 == 0))
                throw new ArgumentException("Conversation roles must alternate user/assistant/user/assistant/... (after an optional system message).");
    }

    /// <summary>Python's str.strip() / Jinja's trim: whitespace off both ends.</summary>
    static string PyStrip(string s) => s.Trim();
}
