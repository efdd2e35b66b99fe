using Orleans.Runtime;
using RefAlign.Contracts.Control;
using RefAlign.Contracts.Grains;

namespace RefAlign.Grains;

/// <summary>
/// The list of run ids and the ended runs' final summaries, persisted in grain storage. The summaries are kept apart
/// from the ids so a registry written before they existed loads as is (its runs report once their grains activate).
/// </summary>
public sealed class RunRegistryGrain(
    [PersistentState("runs")] IPersistentState<List<string>> runs,
    [PersistentState("ended")] IPersistentState<Dictionary<string, RunEnding>> endings) : Grain, IRunRegistryGrain
{
    public async Task Add(string runId)
    {
        if (runs.State.Contains(runId)) return;
        runs.State.Add(runId);
        await runs.WriteStateAsync();
    }

    public Task<IReadOnlyList<string>> List() => Task.FromResult<IReadOnlyList<string>>([.. runs.State]);

    public Task<RunRegistryView> View() => Task.FromResult(new RunRegistryView([.. runs.State],
        endings.State.Where(e => e.Value.Summary is not null).ToDictionary(e => e.Key, e => e.Value.Summary!)));

    public async Task Report(string runId, long sequence, RunSummary? ended)
    {
        if (ended is not null && !ended.Status.IsFinal()) throw new ArgumentException($"run '{runId}' reported as ended while {ended.Status}.", nameof(ended));
        if (!runs.State.Contains(runId)) return;
        // Same sequence, same state: a reactivated grain repeating itself costs no write.
        if (endings.State.TryGetValue(runId, out var known)
            && (known.Sequence > sequence || known.Sequence == sequence && (known.Summary is null) == (ended is null))) return;
        endings.State[runId] = new RunEnding(sequence, ended);
        await endings.WriteStateAsync();
    }
}

/// <summary>The newest report of one run: the event sequence it was made at, and the final summary if it had ended.</summary>
[GenerateSerializer, Immutable]
public sealed record RunEnding([property: Id(0)] long Sequence, [property: Id(1)] RunSummary? Summary);
