namespace RefAlign.Grains;

/// <summary>
/// Where a silo resolves the relative paths of remote run configs: <see cref="DataRoot"/> (<c>Silo:DataRoot</c>, by
/// default the folder the operator started the silo from), never a project or build-output folder.
/// </summary>
public sealed record RunPaths(string DataRoot)
{
    public static RunPaths FromWorkingDirectory() => new(Directory.GetCurrentDirectory());
}
