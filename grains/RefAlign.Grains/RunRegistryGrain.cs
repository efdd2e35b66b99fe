using Orleans.Runtime;
using RefAlign.Contracts.Grains;

namespace RefAlign.Grains;

/// <summary>The list of run ids, persisted in grain storage.</summary>
public sealed class RunRegistryGrain([PersistentState("runs")] IPersistentState<List<string>> runs) : Grain, IRunRegistryGrain
{
    public async Task Add(string runId)
    {
        if (runs.State.Contains(runId)) return;
        runs.State.Add(runId);
        await runs.WriteStateAsync();
    }

    public Task<IReadOnlyList<string>> List() => Task.FromResult<IReadOnlyList<string>>([.. runs.State]);
}
