using System.CommandLine;
using RefAlign.Compute.Scoring;
using RefAlign.Compute.Tokenization;
using Spectre.Console;
using static TorchSharp.torch;

namespace RefAlign.Cli.Commands;

/// <summary><c>refalign logprobs</c>: log π(completion | prompt), summed, mean and per token (docs/algorithms.md §1).</summary>
internal static class LogProbsCommand
{
    public static Command Create()
    {
        var model = CliSupport.ModelOption();
        var prompt = new Option<string>("--prompt") { Required = true };
        var completion = new Option<string>("--completion") { Required = true };
        var template = new Option<string>("--chat-template") { Description = "none (the default), auto (the model's own template) or zephyr.", DefaultValueFactory = _ => "none" };
        template.AcceptOnlyFromAmong([.. ChatTemplates.Names]);
        var noEos = new Option<bool>("--no-eos") { Description = "Do not append EOS to the completion." };
        var json = CliSupport.JsonOption();
        var device = CliSupport.DeviceOption();
        var cmd = new Command("logprobs", "Log-probability of a completion given a prompt.")
        {
            model, prompt, completion, template, noEos, device, json,
        };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            var (lm, tok) = CliSupport.Load(r.GetValue(model)!, r.GetValue(device)!);
            using var _ = lm;
            var promptIds = ChatTemplates.Encode(tok, ChatTemplates.Resolve(r.GetValue(template)!, tok).Prompt(r.GetValue(prompt)!)).ToArray();
            var completionIds = tok.Encode(r.GetValue(completion)!, addSpecialTokens: false).ToList();
            if (!r.GetValue(noEos)) completionIds.Add(CliSupport.EosIds(lm, tok)[0]);
            if (completionIds.Count == 0) throw new ArgumentException("--completion: the completion has no tokens.");
            if (promptIds.Length + completionIds.Count > lm.Config.MaxPositionEmbeddings)
                throw new ArgumentException(
                    $"prompt + completion are {promptIds.Length + completionIds.Count} tokens; the model context (config.json field 'max_position_embeddings') is {lm.Config.MaxPositionEmbeddings}.");
            using var noGrad = no_grad();
            using var res = SequenceLogProbs.Compute(lm, SequenceCollator.Collate([(promptIds, completionIds.ToArray())], 0, PaddingSide.Right));
            var perToken = res.PerToken[0].narrow(0, promptIds.Length, completionIds.Count).data<float>().ToArray();
            var sum = res.Sum[0].item<float>();
            var mean = res.Mean[0].item<float>();
            var tokens = completionIds.Select(id => tok.Decode([id], skipSpecialTokens: false)).ToArray();
            if (r.GetValue(json))
            {
                CliSupport.WriteJson(new
                {
                    prompt_ids = promptIds, completion_ids = completionIds, tokens, token_logprobs = perToken,
                    sum_logprob = sum, mean_logprob = mean,
                });
                return 0;
            }
            var table = new Table().AddColumns("#", "id", "token", "logprob");
            for (var i = 0; i < completionIds.Count; i++)
                table.AddRow($"{i}", $"{completionIds[i]}", Markup.Escape(tokens[i]), $"{perToken[i]:F5}");
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLineInterpolated($"sum logprob [bold]{sum:F6}[/], mean [bold]{mean:F6}[/] over {completionIds.Count} tokens");
            return 0;
        }));
        return cmd;
    }
}
