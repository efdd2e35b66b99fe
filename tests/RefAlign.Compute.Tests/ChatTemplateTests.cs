using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// <c>chat_template: auto</c>: the real templates of the common families (TestData/chat_templates, copied from the
/// models' tokenizer_config.json) are recognised and rendered as their Jinja text renders (trim_blocks, lstrip_blocks),
/// here for system?, user, assistant, user + the generation prompt.
/// </summary>
public sealed class ChatTemplateTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("refalign-chat-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static string Fixture(string name, [CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(source)!, "TestData", "chat_templates", name + ".json");

    /// <summary>A model folder whose tokenizer_config.json is the fixture's.</summary>
    private string ModelWith(string fixture)
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root, fixture)).FullName;
        File.Copy(Fixture(fixture), Path.Combine(dir, "tokenizer_config.json"));
        return dir;
    }

    private ChatFormat Recognized(string fixture)
    {
        var config = JsonNode.Parse(File.ReadAllText(Fixture(fixture)))!;
        var format = ChatTemplates.FromModel(ModelWith(fixture));
        Assert.NotNull(format);
        // As ChatTemplates.Resolve fills them from the tokenizer: the config's bos_token / eos_token.
        return format with { Bos = (string?)config["bos_token"] ?? "", Eos = (string?)config["eos_token"] ?? "" };
    }

    private static readonly ChatMessage System = new("system", "You are a helpful assistant.");
    private static readonly ChatMessage[] Turns = [new("user", "Hello"), new("assistant", "Hi there"), new("user", "Who are you?")];

    [Theory]
    // Qwen/Qwen2-0.5B-Instruct: its default system turn when the conversation has none.
    [InlineData("qwen2-0.5b-instruct", ChatFamily.ChatMl,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")]
    // Qwen/Qwen2.5-0.5B-Instruct: another default system turn, taken from the template's text (its tools branch unused).
    [InlineData("qwen2.5-0.5b-instruct", ChatFamily.ChatMl,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")]
    // meta-llama/Llama-2-7b-chat-hf: the system message inside the first [INST]; no generation prompt.
    [InlineData("llama-2-7b-chat", ChatFamily.Llama2,
        "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Who are you? [/INST]",
        "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you? [/INST]")]
    // meta-llama/Meta-Llama-3-8B-Instruct
    [InlineData("llama-3-8b-instruct", ChatFamily.Llama3,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    // mistralai/Mistral-7B-Instruct-v0.2 (2024 template): spaces around [INST], system message before the first turn.
    [InlineData("mistral-7b-instruct-v0.2", ChatFamily.Mistral,
        "<s> [INST] You are a helpful assistant.\n\nHello [/INST] Hi there</s> [INST] Who are you? [/INST]",
        "<s> [INST] Hello [/INST] Hi there</s> [INST] Who are you? [/INST]")]
    // mistralai/Mixtral-8x7B-Instruct-v0.1: no system role (its template raises).
    [InlineData("mixtral-8x7b-instruct-v0.1", ChatFamily.Mistral, null,
        "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you? [/INST]")]
    // mistralai/Mistral-7B-Instruct-v0.1 before 2024: a space after each answer's EOS.
    [InlineData("mistral-7b-instruct-v0.1-legacy", ChatFamily.Mistral, null,
        "<s>[INST] Hello [/INST]Hi there</s> [INST] Who are you? [/INST]")]
    // HuggingFaceH4/zephyr-7b-beta
    [InlineData("zephyr-7b-beta", ChatFamily.Zephyr,
        "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n<|user|>\nWho are you?</s>\n<|assistant|>\n",
        "<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n<|user|>\nWho are you?</s>\n<|assistant|>\n")]
    // google/gemma-2b-it: no system role (its template raises).
    [InlineData("gemma-2b-it", ChatFamily.Gemma, null,
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\n")]
    public void Real_templates_are_recognised_and_render_as_their_jinja_does(string fixture, ChatFamily family, string? withSystem, string withoutSystem)
    {
        var format = Recognized(fixture);
        Assert.Equal(family, format.Family);
        Assert.Equal(withoutSystem, format.Render(Turns, addGenerationPrompt: true));
        if (withSystem is null) Assert.Throws<ArgumentException>(() => format.Render([System, .. Turns], addGenerationPrompt: true));
        else Assert.Equal(withSystem, format.Render([System, .. Turns], addGenerationPrompt: true));
    }

    [Fact]
    public void Without_the_generation_prompt_the_conversation_ends_after_the_last_turn()
    {
        Assert.Equal("<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n<|user|>\nWho are you?</s>\n",
            Recognized("zephyr-7b-beta").Render(Turns, addGenerationPrompt: false));
        Assert.Equal("<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you?<end_of_turn>\n",
            Recognized("gemma-2b-it").Render(Turns, addGenerationPrompt: false));
        Assert.EndsWith("Who are you?<|eot_id|>", Recognized("llama-3-8b-instruct").Render(Turns, addGenerationPrompt: false));
    }

    [Fact]
    public void Prompt_and_header_are_one_user_turn_and_what_precedes_its_text()
    {
        var llama2 = Recognized("llama-2-7b-chat");
        Assert.Equal("<s>[INST] Why? [/INST]", llama2.Prompt("  Why?  "));
        Assert.Equal("<s>[INST] ", llama2.Header);
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n", Recognized("qwen2-0.5b-instruct").Header);
        Assert.Equal("<s> [INST] ", Recognized("mistral-7b-instruct-v0.2").Header);
        Assert.Equal("<|user|>\n", ChatFormat.BuiltInZephyr.Header);
        Assert.Equal("", ChatFormat.None.Header);
    }

    [Fact]
    public void Roles_that_do_not_alternate_are_refused_as_the_templates_refuse_them()
    {
        var e = Assert.Throws<ArgumentException>(() => Recognized("llama-2-7b-chat").Render([new("user", "a"), new("user", "b")], true));
        Assert.Contains("alternate", e.Message);
    }

    [Fact]
    public void An_unrecognised_template_names_the_file_and_points_at_the_setting()
    {
        // Phi-3 ends turns with <|end|>, not EOS: it looks like Zephyr but renders differently.
        var dir = ModelWith("phi-3-mini-4k-instruct");
        var e = Assert.Throws<ModelFormatException>(() => ChatTemplates.FromModel(dir));
        Assert.Contains(Path.Combine(dir, "tokenizer_config.json"), e.Message);
        Assert.Contains("policy.chat_template", e.Message);
    }

    [Theory]
    // Excerpts of variants that would render differently from their family's format: refused, not approximated.
    [InlineData("{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Cutting Knowledge Date: December 2023\\n' }}<|eot_id|>")]
    [InlineData("{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}")]
    [InlineData("{{- bos_token }}{%- if loop.last and system_message is defined %}{{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}{%- else %}{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}{%- endif %}")]
    [InlineData("{% for message in messages %}{{ message['content'] }}{% endfor %}")]
    public void Variants_the_families_do_not_cover_are_refused(string template)
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root, "variant")).FullName;
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject { ["chat_template"] = template }.ToJsonString());
        Assert.Throws<ModelFormatException>(() => ChatTemplates.FromModel(dir));
    }

    [Fact]
    public void The_list_form_uses_the_entry_named_default()
    {
        var zephyr = (string)JsonNode.Parse(File.ReadAllText(Fixture("zephyr-7b-beta")))!["chat_template"]!;
        var dir = Directory.CreateDirectory(Path.Combine(_root, "named")).FullName;
        var config = new JsonObject
        {
            ["chat_template"] = new JsonArray(
                new JsonObject { ["name"] = "tool_use", ["template"] = "{{ tools }}" },
                new JsonObject { ["name"] = "default", ["template"] = zephyr }),
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString());
        Assert.Equal(ChatFamily.Zephyr, ChatTemplates.FromModel(dir)!.Family);

        config["chat_template"]!.AsArray().RemoveAt(1);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString());
        Assert.Contains("default", Assert.Throws<ModelFormatException>(() => ChatTemplates.FromModel(dir)).Message);
    }

    [Fact]
    public void Auto_renders_with_the_tokenizers_bos_and_eos_and_encodes_one_bos()
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root, "sp")).FullName;
        TokenizerWriter.WriteSentencePiece(dir, DemoCorpus.Sentences, 1000);
        var tok = TextTokenizer.Load(dir);
        Assert.Equal(ChatFormat.None, ChatTemplates.Resolve(ChatTemplate.Auto, tok)); // the written folder has no template

        var configPath = Path.Combine(dir, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["chat_template"] = (string)JsonNode.Parse(File.ReadAllText(Fixture("llama-2-7b-chat")))!["chat_template"]!;
        File.WriteAllText(configPath, config.ToJsonString());
        tok = TextTokenizer.Load(dir);
        var format = ChatTemplates.Resolve(ChatTemplate.Auto, tok);
        Assert.Equal("<s>[INST] the cat [/INST]", format.Prompt("the cat"));

        // The template writes BOS itself; the tokenizer (add_bos_token) does not add a second.
        var ids = ChatTemplates.Encode(tok, format.Prompt("the cat"));
        Assert.Equal(tok.BosId, ids[0]);
        Assert.NotEqual(tok.BosId, ids[1]);
        // Explicit names still win over the model's template.
        Assert.Equal("the cat", ChatTemplates.Resolve(ChatTemplate.None, tok).Prompt("the cat"));
        Assert.Equal("<|user|>\nthe cat</s>\n<|assistant|>\n", ChatTemplates.Resolve(ChatTemplate.Zephyr, tok).Prompt("the cat"));
    }

    [Fact]
    public void A_run_config_with_auto_and_an_unknown_template_is_refused_at_validation()
    {
        var dir = ModelWith("phi-3-mini-4k-instruct");
        File.WriteAllText(Path.Combine(dir, "config.json"), "{}");
        var config = new RunConfig { Policy = new PolicySection { Model = dir } };
        Assert.Equal(ChatTemplate.Auto, config.Policy.ChatTemplate);
        var e = Assert.Throws<InvalidRunConfigException>(() => config.Validate());
        Assert.Equal("policy.chat_template", e.Field);
        Assert.Contains("tokenizer_config.json", e.Message);
        // Naming a format is the way out.
        var named = config with { Policy = config.Policy with { ChatTemplate = ChatTemplate.Zephyr } };
        Assert.NotEqual("policy.chat_template", Assert.Throws<InvalidRunConfigException>(() => named.Validate()).Field);
    }
}
