using Orleans.Runtime;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;
using RefAlign.Compute;
using RefAlign.Compute.Training;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// End-to-end runs through <see cref="IRunControl"/> on the three-silo cluster, checked against the single-process
/// trainer (<see cref="LocalTrainingServices"/> + <see cref="TrainingRun"/>, i.e. <c>refalign train</c>) on the same
/// config: orchestration must add no numeric drift.
/// </summary>
/// <remarks>
/// Tolerance: 1e-4 absolute per step. Sharding changes how rows are batched (each generator / reference shard pads
/// its own subset; left padding changes the reduction order inside attention and matmuls), so log-probs and hence
/// losses differ from the local run at the ~1e-6 level; anything orchestration could get wrong (a stale policy, a
/// wrong shard order, a lost or doubled step, mismatched references) moves them by far more than 1e-4.
/// </remarks>
[Collection(ClusterCollection.Name)]
public sealed class ClusterRunTests(ClusterFixture fixture, Xunit.Abstractions.ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    static List<IReadOnlyDictionary<string, double>> StepMetrics(IEnumerable<RunEvent> events) =>
        [.. events.Where(e => e.Kind == RunEventKind.Step).OrderBy(e => e.Step).Select(e => e.Metrics)];

    void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        output.WriteLine($"{what}: max |local - cluster| = {expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second)):E2} over {expected.Count} step(s)");
        for (var i = 0; i < expected.Count; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Tolerance,
                $"{what} at step {i}: local {expected[i]:R}, cluster {actual[i]:R} (|Δ| {Math.Abs(expected[i] - actual[i]):E2} > {Tolerance:E0}); " +
                $"local [{string.Join(", ", expected.Select(x => x.ToString("F6")))}] cluster [{string.Join(", ", actual.Select(x => x.ToString("F6")))}]");
    }

    [Fact]
    public async Task RefAlign_sync_run_on_three_silos_matches_the_single_process_trainer()
    {
        var config = fixture.RefAlignConfig("ra-e2e", seed: 5, steps: 3);
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(2));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        Assert.Equal(3, summary.Step);
        Assert.Equal(3, summary.WeightVersion);

        var cluster = StepMetrics(events);
        Assert.Equal([1, 2, 3], events.Where(e => e.Kind == RunEventKind.Step).Select(e => e.Step).Order());

        // Where the work ran: learner on the learner silo, both generator shards on generator silos, the BERTScore
        // workers on the scorer silo.
        Assert.Equal(ClusterFixture.SiloA, await fixture.WhereIsAsync(fixture.Client.GetGrain<ILearnerGrain>(runId)));
        for (var s = 0; s < 2; s++)
        {
            var silo = await fixture.WhereIsAsync(fixture.Client.GetGrain<IRolloutGeneratorGrain>($"{runId}/{s}"));
            Assert.Contains(silo, new[] { ClusterFixture.SiloB, ClusterFixture.SiloC });
            // Sync mode: step t samples with version t, so after 3 steps each generator holds version 2.
            Assert.Equal(2, await fixture.Client.GetGrain<IRolloutGeneratorGrain>($"{runId}/{s}").WeightVersion());
        }
        var stats = await fixture.Client.GetGrain<IManagementGrain>(0).GetDetailedGrainStatistics();
        var scorers = stats.Where(s => s.GrainType.Contains(nameof(RefAlign.Grains.RewardScorerGrain), StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(scorers);
        Assert.All(scorers, s => Assert.Equal(ClusterFixture.SiloC, fixture.NameOf(s.SiloAddress)));

        // The same config in this process.
        var local = RunRecorder.RunLocally(config with { OutputDir = Path.Combine(fixture.Root, "local", "ra-e2e") });
        Assert.Equal(3, local.Steps.Count);
        var localLoss = local.Steps.Select(s => s.Metrics["loss"]).ToList();
        AssertClose(localLoss, [.. cluster.Select(m => m["loss"])], "loss");
        AssertClose([.. local.Steps.Select(s => s.Metrics["reward/mean"])], [.. cluster.Select(m => m["reward/mean"])], "reward/mean");
        AssertClose([.. local.Steps.Select(s => s.Metrics["response_length/mean"])], [.. cluster.Select(m => m["response_length/mean"])], "response_length/mean");
        // Not a vacuous comparison: the run learns, so the numbers move from step to step.
        Assert.True(localLoss.Distinct().Count() == localLoss.Count, $"losses do not change: {string.Join(", ", localLoss)}");

        // The run wrote its final checkpoint under its own folder.
        Assert.NotNull(summary.LatestCheckpoint);
        Assert.StartsWith(Path.Combine(config.OutputDir, runId), summary.LatestCheckpoint);
        Assert.True(Directory.Exists(summary.LatestCheckpoint));
    }

    [Theory]
    [InlineData(Algorithm.Grpo)]
    [InlineData(Algorithm.Rloo)]
    [InlineData(Algorithm.ReinforcePp)]
    public async Task Grpo_family_run_on_three_silos_matches_the_single_process_trainer(Algorithm algorithm)
    {
        var name = $"pg-{algorithm}".ToLowerInvariant();
        var config = (fixture.RefAlignConfig(name, seed: 5, steps: 3) with
        {
            Algorithm = algorithm,
            PolicyGradient = new PolicyGradientSection { KlCoef = algorithm == Algorithm.Rloo ? 0 : 0.05, LossAveraging = algorithm == Algorithm.Grpo ? Compute.Losses.LossAveraging.Sequence : Compute.Losses.LossAveraging.Token },
        }).Validate();
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(2));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        Assert.Equal(3, summary.WeightVersion);

        var local = RunRecorder.RunLocally(config with { OutputDir = Path.Combine(fixture.Root, "local", name) });
        var cluster = StepMetrics(events);
        foreach (var key in new[] { "loss", "reward/mean", "policy/ratio_mean", "grad_norm" })
            AssertClose([.. local.Steps.Select(s => s.Metrics[key])], [.. cluster.Select(m => m[key])], key);
        // On-policy the loss's value is ≈ −Σ A·n/N, 0 when every sample runs to max_new_tokens: the gradients show the learning.
        var norms = local.Steps.Select(s => s.Metrics["grad_norm"]).ToList();
        Assert.True(norms.All(n => n > 1e-3) && norms.Distinct().Count() == norms.Count, $"gradient norms: {string.Join(", ", norms)}");
    }

    [Fact]
    public async Task SrDpo_run_on_three_silos_matches_the_single_process_trainer()
    {
        var config = fixture.SrDpoConfig("srdpo-e2e", seed: 3, steps: 4);
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(2));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
        Assert.Equal(4, summary.Step);

        Assert.Equal(ClusterFixture.SiloA, await fixture.WhereIsAsync(fixture.Client.GetGrain<ILearnerGrain>(runId)));
        for (var s = 0; s < 2; s++)
        {
            var reference = fixture.Client.GetGrain<IReferenceScorerGrain>($"{runId}/{s}");
            Assert.Contains(await fixture.WhereIsAsync(reference), new[] { ClusterFixture.SiloB, ClusterFixture.SiloC });
            Assert.True(await reference.ModelPasses() > 0, $"reference shard {s} never ran the model");
        }

        var local = RunRecorder.RunLocally(config with { OutputDir = Path.Combine(fixture.Root, "local", "srdpo-e2e") });
        var cluster = StepMetrics(events);
        var localLoss = local.Steps.Select(s => s.Metrics["loss"]).ToList();
        AssertClose(localLoss, [.. cluster.Select(m => m["loss"])], "loss");
        AssertClose([.. local.Steps.Select(s => s.Metrics["rewards/margins"])], [.. cluster.Select(m => m["rewards/margins"])], "rewards/margins");
        Assert.True(localLoss.Distinct().Count() == localLoss.Count, $"losses do not change: {string.Join(", ", localLoss)}");

        // Periodic eval ran on the cluster too, with the same numbers.
        var evals = events.Where(e => e.Kind == RunEventKind.Eval).ToList();
        var eval = Assert.Single(evals);
        AssertClose([local.Evals[^1]["eval/rewards/accuracies"]], [eval.Metrics["eval/rewards/accuracies"]], "eval/rewards/accuracies");
    }

    [Fact]
    public async Task SrDpo_prompted_pass_offloaded_to_a_generator_silo_gives_the_learners_losses()
    {
        // Silo A holds the learner only; B and C are generator silos, so "auto" runs the prompted pass on a replica there.
        async Task<List<IReadOnlyDictionary<string, double>>> Run(RefinementPass pass)
        {
            var config = fixture.SrDpoConfig($"srdpo-pass-{pass}", seed: 7, steps: 3) with { EvalEvery = 0 };
            config = config with { Preference = config.Preference with { RefinementPass = pass } };
            var runId = await fixture.Control.StartRunAsync(config.ToJson());
            var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(2));
            Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");
            if (pass == RefinementPass.Auto)
                Assert.Contains(await fixture.WhereIsAsync(fixture.Client.GetGrain<IRolloutGeneratorGrain>($"{runId}/refine")), new[] { ClusterFixture.SiloB, ClusterFixture.SiloC });
            return StepMetrics(events);
        }
        var offloaded = await Run(RefinementPass.Auto);
        var learner = await Run(RefinementPass.Learner);
        Assert.All(offloaded, m => Assert.Equal(1.0, m[Learner.OffloadedMetric])); // the replica's values were used at every step
        Assert.All(learner, m => Assert.False(m.ContainsKey(Learner.OffloadedMetric)));
        foreach (var key in new[] { "loss", "refine/delta", "rewards/margins", "grad_norm" })
        {
            var (a, b) = (learner.Select(m => m[key]).ToList(), offloaded.Select(m => m[key]).ToList());
            output.WriteLine($"{key}: max |learner - offloaded| = {a.Zip(b).Max(p => Math.Abs(p.First - p.Second)):E2}");
            Assert.Equal(a, b, (x, y) => Math.Abs(x - y) <= 1e-6 * Math.Max(1, Math.Abs(x)));
        }
    }

    [Fact]
    public async Task SrDpo_with_lora_and_a_separate_reference_model_matches_the_single_process_trainer()
    {
        var config = fixture.SrDpoConfig("srdpo-lora-ref", seed: 3, steps: 3) with
        {
            Policy = new PolicySection { Model = fixture.PolicyDir, ReferenceModel = fixture.ReferenceDir, Lora = new LoraSection { Rank = 4, Alpha = 8 } },
            EvalEvery = 0,
        };
        var runId = await fixture.Control.StartRunAsync(config.ToJson());
        var (summary, events) = await fixture.WaitForEndAsync(runId, TimeSpan.FromMinutes(2));
        Assert.True(summary.Status == RunStatus.Completed, $"{summary.Status}: {summary.Error}");

        var local = RunRecorder.RunLocally(config with { OutputDir = Path.Combine(fixture.Root, "local", "srdpo-lora-ref") });
        var cluster = StepMetrics(events);
        AssertClose([.. local.Steps.Select(s => s.Metrics["loss"])], [.. cluster.Select(m => m["loss"])], "loss");
        AssertClose([.. local.Steps.Select(s => s.Metrics["refine/marginal"])], [.. cluster.Select(m => m["refine/marginal"])], "refine/marginal");
        // The reference is the other model, not the adapters-off policy (which gives |rewards| < 1e-4 at step 0, see
        // TrainerExtraTests): the implicit rewards start away from zero.
        Assert.True(Math.Abs(local.Steps[0].Metrics["rewards/chosen"]) > 1e-4, $"rewards/chosen at step 0: {local.Steps[0].Metrics["rewards/chosen"]}");
    }
}
