using System.CommandLine;

namespace RefAlign.Cli.Commands;

/// <summary>
/// <c>refalign run pull ID [--checkpoint latest|step-N] --out DIR</c>: a run's checkpoint as the Hugging Face folder it
/// holds (or its LoRA adapter), bit for bit; <c>--eval</c>: the report <c>run eval</c> stored on the cluster.
/// </summary>
internal static class RunPullCommand
{
    /// <summary>The artifact a run's stored evaluation report lives under.</summary>
    public static string ReportArtifact(string runId) => $"reports/{runId}";

    public static Command Create(Option<string> silo, Option<string?> apiKey)
    {
        var id = new Argument<string>("id") { Description = "The run id." };
        var checkpoint = new Option<string>("--checkpoint") { Description = "latest or step-N.", DefaultValueFactory = _ => "latest" };
        var eval = new Option<bool>("--eval") { Description = "Pull the evaluation report `refalign run eval` stored instead of a checkpoint." };
        var output = new Option<string>("--out") { Description = "A new or empty folder to write into.", Required = true };
        var json = CliSupport.JsonOption();
        var cmd = new Command("pull", "Bring a run's checkpoint (an HF folder, or the LoRA adapter) or its evaluation report back from the cluster.")
        {
            id, checkpoint, eval, output, json,
        };
        cmd.SetAction((r, ct) => RemoteSupport.RunAsync(r.GetValue(silo)!, async () =>
        {
            using var client = RemoteSupport.Connect(r, silo, apiKey);
            var runId = r.GetValue(id)!;
            var what = r.GetValue(eval) ? $"{runId} report" : $"{runId} {r.GetValue(checkpoint)}";
            var pulled = await TransferView.RunAsync($"pull {what}", r.GetValue(json), p => r.GetValue(eval)
                ? client.PullArtifactAsync(ReportArtifact(runId), r.GetValue(output)!, p, ct)
                : client.PullRunAsync(runId, r.GetValue(checkpoint)!, r.GetValue(output)!, p, ct));
            ArtifactCommand.Report(pulled, r.GetValue(output)!, r.GetValue(json));
            return 0;
        }));
        return cmd;
    }
}
