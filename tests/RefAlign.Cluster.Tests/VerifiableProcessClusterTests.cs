using RefAlign.Client;

namespace RefAlign.Cluster.Tests;

/// <summary>
/// The verifiable demo on a real cluster: the README's GRPO recipe (<c>examples/recipes/grpo-verifiable.json</c>, a rule
/// reward on <c>verifiable.jsonl</c>) started over gRPC on two silo processes, its learner on one and its generators and
/// scorers on the other, raises held-out accuracy over the starting policy.
/// </summary>
[Trait("Tier", "Process")]
public sealed class VerifiableProcessClusterTests(Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    readonly DemoWorkspace _workspace = new("refalign-verifiable-cluster-");
    ProcessCluster _cluster = null!;

    public async Task InitializeAsync()
    {
        VerifiableTask.Prepare(_workspace.Root);
        _cluster = await ProcessCluster.StartAsync(_workspace, ("verifiable-a", "learner"), ("verifiable-b", "generator,scorer,reference"));
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        _workspace.Dispose();
    }

    [Fact]
    public async Task The_grpo_recipe_with_a_rule_reward_raises_held_out_accuracy_on_silo_processes()
    {
        using var client = _cluster.Client("verifiable-b");
        // The recipe as shipped: its relative paths resolve under the silos' data and output roots (the workspace).
        var id = await client.StartRunAsync(await File.ReadAllTextAsync(VerifiableTask.RecipePath));
        var evals = new List<double>();
        using var watch = new CancellationTokenSource(TimeSpan.FromMinutes(15));
        await foreach (var e in client.WatchRunAsync(id, 0, watch.Token))
            if (e.Kind == RunEventKind.Eval) evals.Add(e.Metrics["eval/accuracy"]);
        var run = await client.GetRunAsync(id);
        Assert.True(run.Status == RunStatus.Completed, $"{run.Status}: {run.Error}\n{_cluster.Logs()}");
        Assert.Equal(40, run.Step);

        var recipe = VerifiableTask.Recipe(_workspace.Root);
        var before = VerifiableTask.HeldOutAccuracy(recipe, recipe.Policy.Model, Path.Combine(_workspace.Root, "eval", "before"));
        var after = VerifiableTask.HeldOutAccuracy(recipe, run.LatestCheckpoint!, Path.Combine(_workspace.Root, "eval", "after"));
        output.WriteLine($"held-out accuracy {before:F3} → {after:F3}; periodic eval on the cluster {string.Join(", ", evals.Select(a => a.ToString("F3")))}");
        Assert.True(before < 0.02 && after >= 0.05 && after >= 4 * before, $"held-out accuracy {before:F3} → {after:F3}");
        Assert.Equal(2, evals.Count);
        Assert.True(evals[^1] >= 0.05, $"periodic eval accuracy {string.Join(", ", evals)}");
    }
}
