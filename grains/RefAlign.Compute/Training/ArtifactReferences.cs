namespace RefAlign.Compute.Training;

/// <summary>What a path field of a run config must name when it names an artifact.</summary>
public enum ArtifactUse
{
    Model,
    Encoder,
    Data,
}

/// <summary>
/// <c>artifact:&lt;name&gt;</c> in a run config's path fields: inputs a trainer pushed to the cluster (<c>refalign artifact
/// push</c>). A silo resolves them to the stored copy, which every silo of the run shares; a workstation has no store,
/// so <c>refalign train</c> says how to get the files instead.
/// </summary>
public static class ArtifactReferences
{
    public const string Prefix = "artifact:";

    public static bool IsArtifact(string? value, out string name)
    {
        name = value is not null && value.StartsWith(Prefix, StringComparison.Ordinal) ? value[Prefix.Length..].Trim() : "";
        return name.Length > 0;
    }

    /// <summary>Every <c>artifact:</c> field replaced by <paramref name="resolve"/>(name, field, use)'s path.</summary>
    public static RunConfig Resolve(RunConfig c, Func<string, string, ArtifactUse, string> resolve)
    {
        string Map(string value, string field, ArtifactUse use) => IsArtifact(value, out var name) ? resolve(name, field, use) : value;
        return c with
        {
            Policy = c.Policy with
            {
                Model = Map(c.Policy.Model, "policy.model", ArtifactUse.Model),
                ReferenceModel = c.Policy.ReferenceModel is { } r ? Map(r, "policy.reference_model", ArtifactUse.Model) : null,
            },
            Data = c.Data with { Path = Map(c.Data.Path, "data.path", ArtifactUse.Data) },
            RefAlign = c.RefAlign with { RewardModel = Map(c.RefAlign.RewardModel, "refalign.reward_model", ArtifactUse.Encoder) },
        };
    }

    /// <summary>On a workstation: an artifact name is an error that says where artifacts live and how to fetch one.</summary>
    public static RunConfig RefuseLocally(RunConfig c) => Resolve(c, (name, field, _) => throw new InvalidRunConfigException(field,
        $"field '{field}' names artifact '{name}', which lives on a cluster: start the run there (refalign run start), "
        + $"or fetch it (refalign artifact pull {name} --out DIR) and name the folder."));
}
