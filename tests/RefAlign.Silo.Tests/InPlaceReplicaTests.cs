using System.Text.Json;
using RefAlign.Client;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Grains;
using RefAlign.Presets;
using RefAlign.TestSupport;

namespace RefAlign.Silo.Tests;

/// <summary>
/// In-place replicas: generators on the learner's silo sample the learner's own policy. The lending rules on a real
/// learner, and a whole run on a real silo host (two shards, two compute threads, LoRA) that matches the
/// single-process trainer while moving no weights.
/// </summary>
public sealed class InPlaceReplicaTests(SiloHostFixture silo, Xunit.Abstractions.ITestOutputHelper output)
    : IClassFixture<SiloHostFixture>, IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-inplace-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    string Config(int steps, string mode = "sync")
    {
        var policy = Path.Combine(_root, "policy");
        if (!Directory.Exists(policy))
        {
            ModelPresets.Initialize(policy, "tiny", "llama", seed: 1);
            EncoderPresets.Initialize(Path.Combine(_root, "encoder"), "tiny-roberta", seed: 2);
            DemoData.WriteTo(Path.Combine(_root, "data"));
        }
        return JsonSerializer.Serialize(new
        {
            name = "inplace", algorithm = "refalign", seed = 7,
            // No LoRA dropout: its masks come from torch's process-wide generator, which other test classes of this process
            // draw from in parallel (docs/architecture.md "Not yet"); the eval-mode switch is the lending test's.
            policy = new { model = policy, lora = new { rank = 4, alpha = 8 } },
            data = new { path = Path.Combine(_root, "data", DemoData.ReferencesFileName), max_prompt_length = 32 },
            optimizer = new { kind = "adamw", learning_rate = 0.02, warmup_steps = 0 },
            refalign = new { reward_model = Path.Combine(_root, "encoder"), num_samples = 2, max_new_tokens = 8 },
            batch_size = 4, micro_batch_size = 8, max_steps = steps, eval_every = 0, checkpoint_every = 0,
            output_dir = Path.Combine(_root, "runs"), distributed = new { shards = 2, mode },
        });
    }

    Learner NewLearner()
    {
        var config = RunConfig.Parse(Config(steps: 2)).Validate();
        var policy = CausalLm.FromPretrained(config.Policy.Model);
        return new Learner(config, policy, PolicySetup.SpecialIds(TextTokenizer.Load(config.Policy.Model), policy).Pad, totalSteps: 2);
    }

    [Fact]
    public async Task A_loan_is_for_the_learners_version_in_eval_mode_and_an_update_waits_for_every_loan()
    {
        using var learner = NewLearner();
        var replicas = new InPlaceReplicas();
        Assert.Null(replicas.TryBorrow("r", 0, 0)); // nothing lent yet
        replicas.Lend("r", learner);
        Assert.Null(replicas.TryBorrow("r", 1, long.MaxValue)); // the learner holds version 0
        Assert.Null(replicas.TryBorrow("other", 0, 0));

        Assert.True(learner.Policy.training);
        var first = replicas.TryBorrow("r", 0, 0)!;
        var second = replicas.TryBorrow("r", 0, long.MaxValue)!;
        Assert.Same(learner.Policy, first.Policy);
        Assert.Equal((0L, 0L), (first.Version, second.Version));
        Assert.False(learner.Policy.training); // no dropout while sampling

        // The learner's update waits for both loans, and no new loan is granted meanwhile.
        var update = replicas.UpdateAsync("r");
        await Task.Delay(50);
        Assert.False(update.IsCompleted);
        Assert.Null(replicas.TryBorrow("r", 0, 0));
        first.Dispose();
        first.Dispose(); // returning twice counts once
        await Task.Delay(50);
        Assert.False(update.IsCompleted);
        Assert.False(learner.Policy.training); // the second loan is still sampling
        second.Dispose();
        var held = await update.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(learner.Policy.training); // the last loan restored the learner's mode
        Assert.Null(replicas.TryBorrow("r", 0, 0));
        held.Dispose();
        using (var again = replicas.TryBorrow("r", 0, 0)) Assert.NotNull(again);

        // Withdrawing waits for the loan out; afterwards nothing is lent.
        var last = replicas.TryBorrow("r", 0, 0)!;
        var withdraw = replicas.WithdrawAsync("r");
        await Task.Delay(50);
        Assert.False(withdraw.IsCompleted);
        last.Dispose();
        await withdraw.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Null(replicas.TryBorrow("r", 0, 0));
        Assert.Equal(0, replicas.Lending);
    }

    [Fact]
    public async Task Generators_on_the_learners_silo_sample_its_weights_in_place_and_match_the_single_process_trainer()
    {
        const int steps = 4;
        var json = Config(steps);
        using var client = new RefAlignClient(new RefAlignClientOptions { Address = new Uri($"http://127.0.0.1:{silo.GrpcPort}") });
        var id = await client.StartRunAsync(json);
        var events = new List<RunEvent>();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        await foreach (var e in client.WatchRunAsync(id, 0, cts.Token)) events.Add(e);
        var run = await client.GetRunAsync(id);
        Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}");

        var cluster = events.Where(e => e.Kind == RunEventKind.Step).OrderBy(e => e.Step).Select(e => e.Metrics).ToList();
        Assert.Equal(steps, cluster.Count);
        // No weights moved: both shards sampled the learner's policy at the version each step needs.
        Assert.All(cluster, m => Assert.Equal(0, m.GetValueOrDefault("weight_sync/bytes")));
        // Every shard's sampling span says where its weights came from: the learner's policy, lent in place.
        List<string?> replicas = [];
        for (var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20); replicas.Count < 2 * steps && DateTime.UtcNow < deadline; await Task.Delay(100))
            replicas = [.. silo.Receiver.Spans.Where(s => s.Span.Name == "generate.shard" && s.Attribute("refalign.run_id") == id).Select(s => s.Attribute("refalign.replica"))];
        Assert.Equal(2 * steps, replicas.Count);
        Assert.All(replicas, r => Assert.Equal("in-place", r));

        var config = RunConfig.Parse(json).Validate() with { OutputDir = Path.Combine(_root, "local") };
        var local = RunRecorder.RunLocally(config);
        foreach (var key in new[] { "loss", "reward/mean", "response_length/mean" })
        {
            var expected = local.Steps.Select(s => s.Metrics[key]).ToList();
            var actual = cluster.Select(m => m[key]).ToList();
            output.WriteLine($"{key}: local [{string.Join(", ", expected.Select(x => x.ToString("F6")))}] silo [{string.Join(", ", actual.Select(x => x.ToString("F6")))}]");
            for (var i = 0; i < steps; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5, $"{key} at step {i + 1}: local {expected[i]:R}, silo {actual[i]:R}");
        }
        // Not vacuous: the policy learns, so the losses differ from step to step.
        Assert.Equal(steps, local.Steps.Select(s => s.Metrics["loss"]).Distinct().Count());
    }
}
