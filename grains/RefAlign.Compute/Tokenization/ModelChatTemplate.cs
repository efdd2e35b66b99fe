using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace RefAlign.Compute.Tokenization;

/// <summary>A model folder's own chat template (Jinja text) and the file it came from.</summary>
public sealed partial record ModelChatTemplate(string Text, string Source)
{
    /// <summary>
    /// tokenizer_config.json's <c>chat_template</c>: a string, or a list of <c>{name, template}</c> of which HF uses the
    /// one named <c>default</c>; else a <c>chat_template.jinja</c> file beside it (newer HF exports). Null when neither.
    /// </summary>
    public static ModelChatTemplate? Read(string folder)
    {
        var configPath = Path.Combine(folder, "tokenizer_config.json");
        if (Json.ReadOptional(configPath) is JsonObject config && config["chat_template"] is { } node)
        {
            if (TokenSetting.Content(node) is { } text && node is JsonValue) return new(text, configPath);
            if (node is JsonArray list)
            {
                foreach (var entry in list)
                    if (entry?["name"]?.GetValueKind() == System.Text.Json.JsonValueKind.String && (string?)entry["name"] == "default")
                        return new(Json.Str(entry["template"], configPath, "chat_template[default].template"), configPath);
                throw new ModelFormatException($"{configPath}: chat_template lists named templates but none named 'default'; " +
                                               "set policy.chat_template to choose a format (none, zephyr).");
            }
            throw new ModelFormatException($"{configPath}: chat_template must be a string or a list of {{name, template}}, got {node.ToJsonString()}.");
        }
        var jinja = Path.Combine(folder, "chat_template.jinja");
        return File.Exists(jinja) ? new(File.ReadAllText(jinja), jinja) : null;
    }

    /// <summary>
    /// The family this template is, by the markers each family's template uses, or null when RefAlign does not know
    /// it. Variants that would render differently from the family's format (Qwen3's thinking blocks, Llama 3.1's dated
    /// system turn, Mistral v0.3's system-in-last-turn, Phi-3's <c>&lt;|end|&gt;</c>) are not taken for it.
    /// </summary>
    public ChatFormat? Recognize()
    {
        var t = Text;
        bool Has(string s) => t.Contains(s, StringComparison.Ordinal);

        if (Has("<|im_start|>"))
        {
            // Qwen1.5 leaves the last turn open without a generation prompt; Qwen3 adds <think> blocks; zephyr-gemma adds BOS/EOS.
            if (Has("<think>") || Has("reasoning_content") || Has("not loop.last") || Has("bos_token") || Has("eos_token")) return null;
            var system = DefaultSystemTurn().Match(t);
            return new(ChatFamily.ChatMl, DefaultSystem: system.Success ? Unescape(system.Groups[1].Value) : null) { Source = Source };
        }
        // The families below put bos_token in the text themselves; a template that does not is some other format.
        var bos = Has("bos_token");
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>") && Has("<|eot_id|>"))
            return bos && !Has("Cutting Knowledge Date") && !Has("tools") ? new(ChatFamily.Llama3) { Source = Source } : null;
        if (Has("<start_of_turn>") && Has("<end_of_turn>"))
            return bos && Has("System role not supported") ? new(ChatFamily.Gemma) { Source = Source } : null;
        if (Has("[INST]") && Has("<<SYS>>"))
            return bos && Has("content.strip()") ? new(ChatFamily.Llama2) { Source = Source } : null;
        if (Has("[INST]") && bos)
        {
            // Told apart by what they render: the spaces around [INST]/[/INST] and after the answer's EOS.
            if (Has("' [INST] '") && Has("' [/INST]'") && Has("loop.first and system_message"))
                return new(ChatFamily.Mistral, Mistral: MistralForm.SystemAware) { Source = Source };
            if (Has("'[INST] '") && Has("' [/INST]'") && !Has("system_message"))
                return new(ChatFamily.Mistral, Mistral: EosThenSpace().IsMatch(t) ? MistralForm.SpaceAfterEos : MistralForm.Plain) { Source = Source };
            return null;
        }
        // Zephyr: '<|user|>\n' + content + eos_token, the template's own newline after each turn (Phi-3 ends turns with <|end|>).
        if (Has("<|user|>") && Has("<|assistant|>") && !Has("<|end|>") && ZephyrTurnEnd().IsMatch(t))
            return new(ChatFamily.Zephyr) { Source = Source };
        return null;
    }

    /// <summary>A Jinja string literal's escapes (\n, \', \", \\) as the characters they stand for.</summary>
    static string Unescape(string s) => Regex.Replace(s, @"\\(.)", m => m.Groups[1].Value switch
    {
        "n" => "\n",
        "t" => "\t",
        var c => c,
    });

    [GeneratedRegex(@"<\|im_start\|>system(?:\\n|\n)((?:(?!<\|im_end\|>)[^'""])+)<\|im_end\|>")]
    private static partial Regex DefaultSystemTurn();

    [GeneratedRegex(@"eos_token\s*\+\s*' '")]
    private static partial Regex EosThenSpace();

    [GeneratedRegex(@"eos_token\s*\}\}\n")]
    private static partial Regex ZephyrTurnEnd();
}
