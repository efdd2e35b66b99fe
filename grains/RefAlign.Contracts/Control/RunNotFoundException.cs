namespace RefAlign.Contracts.Control;

/// <summary>No run has this id.</summary>
[GenerateSerializer]
public sealed class RunNotFoundException(string runId) : Exception($"run '{runId}' does not exist.")
{
    [Id(0)] public string RunId { get; } = runId;
}
