using System.Net.Sockets;
using Orleans.Runtime.Messaging;
using Orleans.Serialization;
using Polly.Timeout;
using RefAlign.Compute.Rewards;
using RefAlign.Runtime;

namespace RefAlign.Grains;

/// <summary>What a failed attempt or call means for the run: retried elsewhere, or the end of the run.</summary>
public enum FaultKind
{
    /// <summary>A busy or reshaping cluster (a timeout, a rejected message, a draining silo): retried as it is.</summary>
    Transient,

    /// <summary>A silo stopped answering (killed, frozen, partitioned): retried once membership has re-placed its grains.</summary>
    SiloLost,

    /// <summary>No step finished within the run's stall timeout: the attempt is abandoned and retried.</summary>
    Stalled,

    /// <summary>A bad config, missing data or a bug: retrying cannot help, the run fails.</summary>
    Fatal,
}

/// <summary>
/// A classified fault: its kind, a sentence for an operator (no exception type or grain id: the grain logs the exception
/// itself), and the silo it lost when known.
/// </summary>
public sealed record Fault(FaultKind Kind, string Description, string? LostSilo = null)
{
    /// <summary>The sentence, without a final full stop (it is quoted inside other sentences).</summary>
    public string Description { get; init; } = Description.TrimEnd('.', ' ');

    public bool IsRetried => Kind != FaultKind.Fatal;
}

/// <summary>
/// The one fault policy: exception types to <see cref="FaultKind"/>. Only types decide, never message text; the silo a
/// fault lost comes from <see cref="SiloLostException"/>, which the caller that knew where its grain lived throws.
/// </summary>
public static class ClusterFaults
{
    /// <summary>True for the faults a silo's loss, shutdown or load causes, as opposed to a bad config or a bug.</summary>
    public static bool IsTransient(Exception e) => Classify(e).IsRetried;

    public static Fault Classify(Exception e) => e switch
    {
        AggregateException a when a.InnerExceptions.Count > 0 => Worst([.. a.InnerExceptions.Select(Classify)]),
        SiloLostException lost => new(lost.Silo is null ? FaultKind.Transient : FaultKind.SiloLost, lost.Message, lost.Silo),
        StalledAttemptException stalled => new(FaultKind.Stalled, stalled.Message),
        SiloUnavailableException or ConnectionFailedException or SocketException =>
            new(FaultKind.SiloLost, "a silo became unreachable"),
        SiloDrainingException => new(FaultKind.Transient, e.Message),
        LearnerNotReadyException => new(FaultKind.Transient, "the learner was re-placed after its silo was lost and is not loaded yet"),
        FencedLearnerException => new(FaultKind.Transient, e.Message),
        TimeoutException or TimeoutRejectedException => new(FaultKind.Transient, "a call timed out"),
        OrleansMessageRejectionException or GatewayTooBusyException => new(FaultKind.Transient, "the cluster refused a call (a silo was leaving or overloaded)"),
        IOException => new(FaultKind.Transient, "a connection failed"),
        // Cancelled by the runtime, not by us (the directory recovering a lost silo's range): the run's own cancellations
        // (stop, stall) are told apart before this is asked.
        OperationCanceledException => new(FaultKind.Transient, "a call was cancelled by the runtime"),
        // A reward service that failed its retry budget: retried with the attempt, as a lost worker is (it may come back).
        RemoteRewardException => new(FaultKind.Transient, e.Message),
        // The learner's silos are all gone and a call re-placed it mid-step: the attempt ends like one that lost its silo,
        // and the next one waits, visibly, for a learner silo to join (TrainingRunGrain.WaitForLearnerSiloAsync).
        NoSiloForRoleException => new(FaultKind.Transient, e.Message),
        // A type the serializer cannot carry is a bug on one side, not a cluster fault.
        CodecNotFoundException => new(FaultKind.Fatal, e.Message),
        // Lost connections, forwarding failures and the like surface as plain OrleansException.
        OrleansException => new(FaultKind.Transient, "the cluster failed a call"),
        _ => new(FaultKind.Fatal, e.Message),
    };

    /// <summary>The fault of several parallel calls: fatal if any is, else a lost silo if any named one.</summary>
    static Fault Worst(IReadOnlyList<Fault> faults) =>
        faults.FirstOrDefault(f => f.Kind == FaultKind.Fatal)
        ?? faults.FirstOrDefault(f => f.Kind == FaultKind.SiloLost && f.LostSilo is not null)
        ?? faults.FirstOrDefault(f => f.Kind == FaultKind.SiloLost)
        ?? faults.FirstOrDefault(f => f.Kind == FaultKind.Stalled)
        ?? faults[0];

}

/// <summary>
/// A call to a grain failed because the silo it lived on is gone (or stopped answering); <see cref="Silo"/> is where the
/// caller last saw it (null: unknown). Thrown by the caller, which knows where its grains live; Orleans' own exceptions
/// do not say.
/// </summary>
[GenerateSerializer]
public sealed class SiloLostException(string role, string key, string? silo, Exception? inner = null)
    : Exception($"the {role} {key}{(silo is null ? "" : $" on silo {silo}")} became unreachable", inner)
{
    [Id(0)] public string Role { get; } = role;

    [Id(1)] public string Key { get; } = key;

    [Id(2)] public string? Silo { get; } = silo;
}

/// <summary>No step of the attempt finished within <c>distributed.stall_timeout_seconds</c>.</summary>
public sealed class StalledAttemptException(string message) : Exception(message);
