namespace RefAlign.Contracts.Grains;

/// <summary>
/// Admits runs against the cluster's run limits one request at a time (a single activation, key 0), and says where the
/// next learner has room. A start or a resume counts the running runs and starts its run in the same turn: checked side
/// by side, requests sent at once all passed.
/// </summary>
public interface IRunCapacityGrain : IGrainWithIntegerKey
{
    /// <summary>Registers the run and starts it, or refuses it (resource exhausted) when the cluster is full.</summary>
    Task Start(string runId, string configJson);

    /// <summary>Resumes a run that has ended, or refuses it when the cluster is full; a running run is left as is.</summary>
    Task Resume(string runId);

    /// <summary>
    /// The learner silo holding the fewest learners of running runs (those placed in the last minute included), for a
    /// learner of <paramref name="runId"/> about to be placed; null while no learner silo may take it.
    /// </summary>
    Task<SiloAddress?> LearnerSilo(string runId);
}
