using System.Text.Json.Nodes;
using RefAlign.Compute.Training;
using RefAlign.Grains;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Admission checks all that can be checked before a run exists: where it writes (length, never in the artifact store or
/// another run's folder), every number within float32, the policy's context, bounded lists and names, every file of a
/// model folder at any depth, and the memory its models need from their config.json.
/// </summary>
public sealed class RunAdmissionTests : IDisposable
{
    readonly DemoWorkspace _workspace = new("refalign-admission-");

    public void Dispose() => _workspace.Dispose();

    RunAdmission Admission(RunLimits? limits = null) =>
        new(new RunHostOptions { DataRoots = [_workspace.Root], OutputRoot = _workspace.Root, Limits = limits ?? new RunLimits() });

    static string Edit(string json, Action<JsonObject> change)
    {
        var config = JsonNode.Parse(json)!.AsObject();
        change(config);
        return config.ToJsonString();
    }

    InvalidRunConfigException Refused(string json, IReadOnlyList<string>? runFolders = null) =>
        Assert.Throws<InvalidRunConfigException>(() => Admission().Admit(json, runFolders: runFolders));

    [Fact]
    public void The_tiny_runs_are_admitted()
    {
        Assert.EndsWith("runs", Admission().Admit(TinyRuns.RefAlign("ok", 2)).OutputDir);
        Admission().Admit(TinyRuns.SrDpo("ok", 2));
    }

    [Fact]
    public void Output_dir_is_bounded_and_never_inside_the_artifact_store_or_another_runs_folder()
    {
        var longPath = Refused(Edit(TinyRuns.RefAlign("a", 2), c => c["output_dir"] = new string('x', 100_000)));
        Assert.Equal("output_dir", longPath.Field);
        Assert.Contains("Limits:MaxPathLength", longPath.Message);

        var longName = Refused(Edit(TinyRuns.RefAlign("a", 2), c => c["output_dir"] = "runs/" + new string('y', 300)));
        Assert.Equal("output_dir", longName.Field);
        Assert.Contains("255", longName.Message);

        var store = Refused(Edit(TinyRuns.RefAlign("a", 2), c => c["output_dir"] = "artifacts/objects/0123"));
        Assert.Equal("output_dir", store.Field);
        Assert.Contains("artifact store", store.Message);

        var other = Path.Combine(_workspace.Root, "runs", "a-20260101-000000-abcdef");
        var taken = Refused(Edit(TinyRuns.RefAlign("a", 2), c => c["output_dir"] = "runs/a-20260101-000000-abcdef/mine"), [other]);
        Assert.Equal("output_dir", taken.Field);
        Assert.Contains("another run", taken.Message);
        // Beside it is fine.
        Admission().Admit(TinyRuns.RefAlign("a", 2), runFolders: [other]);

        Assert.Equal("name", Refused(Edit(TinyRuns.RefAlign("a", 2), c => c["name"] = new string('n', 200))).Field);
    }

    [Fact]
    public void Numbers_beyond_float32_and_unbounded_lists_are_refused_by_field()
    {
        Assert.Equal("preference.lambda", Refused(Edit(TinyRuns.SrDpo("a", 2), c => c["preference"]!["lambda"] = 1e308)).Field);
        Assert.Equal("optimizer.learning_rate", Refused(Edit(TinyRuns.SrDpo("a", 2), c => c["optimizer"]!["learning_rate"] = 1e300)).Field);
        var lists = Refused(Edit(TinyRuns.SrDpo("a", 2),
            c => c["policy"]!["lora"] = new JsonObject { ["target_modules"] = new JsonArray([.. Enumerable.Range(0, 10_000).Select(_ => (JsonNode?)"q_proj")]) }));
        Assert.Equal("policy.lora.target_modules", lists.Field);
    }

    [Fact]
    public void Sequences_must_fit_the_policys_context()
    {
        // The tiny policy holds 1024 positions: 32 prompt tokens and 1000 new ones do not fit.
        var tokens = Refused(Edit(TinyRuns.RefAlign("a", 2), c => c["refalign"]!["max_new_tokens"] = 1000));
        Assert.Equal("refalign.max_new_tokens", tokens.Field);
        Assert.Contains("max_position_embeddings 1024", tokens.Message);
        Assert.Equal("data.max_length", Refused(Edit(TinyRuns.SrDpo("a", 2), c => c["data"]!["max_length"] = 2048)).Field);
    }

    [Fact]
    public void Every_file_of_a_model_folder_at_any_depth_stays_inside_the_roots()
    {
        var deep = Path.Combine(_workspace.PolicyDir, "extra", "deeper");
        Directory.CreateDirectory(deep);
        File.CreateSymbolicLink(Path.Combine(deep, "notes.txt"), "/etc/hostname");
        var e = Refused(TinyRuns.RefAlign("a", 2));
        Assert.Equal("policy.model", e.Field);
        Assert.Contains("'extra/deeper/notes.txt' in 'policy' leads outside", e.Message);
    }

    [Fact]
    public void A_model_config_that_cannot_be_read_or_does_not_fit_is_refused_before_anything_loads()
    {
        var config = Path.Combine(_workspace.PolicyDir, "config.json");
        var original = File.ReadAllText(config);
        File.WriteAllText(config, Edit(original, c => c["hidden_size"] = 0));
        var zero = Refused(TinyRuns.RefAlign("a", 2));
        Assert.Equal("policy.model", zero.Field);
        Assert.Contains("'hidden_size'", zero.Message);

        File.WriteAllText(config, original);
        var tooBig = Assert.Throws<ResourceExhaustedException>(() => Admission(new RunLimits { MaxModelMemoryBytes = 1 << 20 }).Admit(TinyRuns.RefAlign("a", 2)));
        Assert.Contains("policy.model", tooBig.Message);
        Assert.Contains("vocab_size", tooBig.Message);
        Assert.Contains("Limits:MaxModelMemoryBytes", tooBig.Message);
    }
}
