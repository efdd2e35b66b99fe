namespace RefAlign.Grains;

/// <summary>How many events a run keeps in memory for watchers (<c>Silo:EventLogCapacity</c>); older ones are trimmed.</summary>
public sealed record RunEventLogOptions(int Capacity = RunEventLogOptions.DefaultCapacity)
{
    public const int DefaultCapacity = 4096;
}
