using System.CommandLine;
using RefAlign.Compute.Generation;
using RefAlign.Compute.Tokenization;
using Spectre.Console;

namespace RefAlign.Cli.Commands;

/// <summary><c>refalign generate</c>: sample completions, with text, ids and per-token log-probs.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = CliSupport.ModelOption();
        var prompt = new Option<string[]>("--prompt") { Description = "Prompt text (repeat for a batch).", Required = true, AllowMultipleArgumentsPerToken = false };
        var samples = new Option<int>("--num-samples") { Description = "Samples per prompt (K).", DefaultValueFactory = _ => 1 };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 1.0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int>("--top-k") { Description = "0 = off.", DefaultValueFactory = _ => 0 };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 0 };
        var template = new Option<string>("--chat-template") { Description = "none (the default), auto (the model's own template) or zephyr.", DefaultValueFactory = _ => "none" };
        template.AcceptOnlyFromAmong([.. ChatTemplates.Names]);
        var json = CliSupport.JsonOption();
        var device = CliSupport.DeviceOption();
        var cmd = new Command("generate", "Sample completions from a model folder.")
        {
            model, prompt, samples, maxNew, temperature, topP, topK, seed, template, device, json,
        };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            var (lm, tok) = CliSupport.Load(r.GetValue(model)!, r.GetValue(device)!);
            using var _ = lm;
            var prompts = r.GetValue(prompt)!;
            var format = ChatTemplates.Resolve(r.GetValue(template)!, tok);
            var ids = prompts.Select(p => ChatTemplates.Encode(tok, format.Prompt(p)).ToArray()).ToList();
            var opts = new SamplingOptions
            {
                MaxNewTokens = r.GetValue(maxNew), Temperature = r.GetValue(temperature), TopP = r.GetValue(topP),
                TopK = r.GetValue(topK), NumSamples = r.GetValue(samples), Seed = r.GetValue(seed),
            };
            var started = DateTime.UtcNow;
            IReadOnlyList<GeneratedSequence> outs = [];
            CliSupport.Status(r.GetValue(json), "Generating",
                () => outs = TextGenerator.Generate(lm, ids, opts, CliSupport.EosIds(lm, tok), CliSupport.PadId(lm, tok)));
            var seconds = (DateTime.UtcNow - started).TotalSeconds;
            var rows = outs.Select(o => new
            {
                prompt_index = o.PromptIndex, sample_index = o.SampleIndex, text = tok.Decode(o.TokenIds),
                token_ids = o.TokenIds, token_logprobs = o.TokenLogProbs, sum_logprob = o.SumLogProb,
                finish_reason = o.FinishReason.ToString().ToLowerInvariant(),
            }).ToList();
            var generated = outs.Sum(o => o.TokenIds.Length);
            if (r.GetValue(json))
            {
                CliSupport.WriteJson(new { prompts, prompt_ids = ids, samples = rows, generated_tokens = generated, seconds });
                return 0;
            }
            foreach (var row in rows)
            {
                AnsiConsole.MarkupLineInterpolated(
                    $"[bold]prompt {row.prompt_index} sample {row.sample_index}[/] [grey](logp {row.sum_logprob:F3}, {row.token_ids.Length} tokens, {row.finish_reason})[/]");
                AnsiConsole.WriteLine(row.text);
            }
            AnsiConsole.MarkupLineInterpolated($"[grey]{generated} tokens in {seconds:F2} s ({generated / Math.Max(seconds, 1e-9):F1} tokens/s)[/]");
            return 0;
        }));
        return cmd;
    }
}
