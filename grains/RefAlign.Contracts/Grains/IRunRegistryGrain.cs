namespace RefAlign.Contracts.Grains;

/// <summary>The cluster's list of runs (a single activation, key 0), persisted so <c>ListRuns</c> survives restarts.</summary>
public interface IRunRegistryGrain : IGrainWithIntegerKey
{
    Task Add(string runId);

    Task<IReadOnlyList<string>> List();
}
