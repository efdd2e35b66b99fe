using System.Net.Sockets;
using Orleans.Runtime.Messaging;
using Orleans.Serialization;
using RefAlign.Grains;
using RefAlign.Runtime;

namespace RefAlign.Cluster.Tests;

/// <summary>The fault policy: exception types to kinds, one case per kind; no message text decides.</summary>
public sealed class ClusterFaultsTests
{
    public static TheoryData<Exception, FaultKind> Cases() => new()
    {
        { new SiloUnavailableException("gone"), FaultKind.SiloLost },
        { new ConnectionFailedException("refused"), FaultKind.SiloLost },
        { new SocketException((int)SocketError.ConnectionReset), FaultKind.SiloLost },
        { new Orleans.Runtime.LimitExceededException("too many requests"), FaultKind.Transient },
        { new GatewayTooBusyException(), FaultKind.Transient },
        { new TimeoutException(), FaultKind.Transient },
        // The runtime's own call timeouts (Polly's); a silo turns them into TimeoutException before they cross a grain boundary.
        { new Polly.Timeout.TimeoutRejectedException(), FaultKind.Transient },
        { new IOException("reset"), FaultKind.Transient },
        { new OperationCanceledException(), FaultKind.Transient },
        { new SiloDrainingException("learner r"), FaultKind.Transient },
        { new LearnerNotReadyException("r"), FaultKind.Transient },
        { new FencedLearnerException("r", 1, 2), FaultKind.Transient },
        { new OrleansException("forwarding failed"), FaultKind.Transient },
        { new StalledAttemptException("no step"), FaultKind.Stalled },
        // A reward service that failed every try of a call: the attempt is retried, as after losing a worker.
        { new RefAlign.Compute.Rewards.RemoteRewardException("https://rm:443", "3 tries failed"), FaultKind.Transient },
        { new NoSiloForRoleException("learner"), FaultKind.Transient },
        // A missing codec is a bug on one side, whatever type it names.
        { new CodecNotFoundException("Could not find a codec for type Polly.Timeout.TimeoutRejectedException."), FaultKind.Fatal },
        { new InvalidOperationException("a bug"), FaultKind.Fatal },
        { new ArgumentException("bad config"), FaultKind.Fatal },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_exception_type_has_its_kind(Exception e, FaultKind kind)
    {
        Assert.Equal(kind, ClusterFaults.Classify(e).Kind);
        Assert.Equal(kind != FaultKind.Fatal, ClusterFaults.IsTransient(e));
        var description = ClusterFaults.Classify(e).Description;
        Assert.False(string.IsNullOrWhiteSpace(description));
        // A retried fault's sentence reaches the run's status: words for an operator, not a type name.
        if (kind != FaultKind.Fatal) Assert.DoesNotContain("Exception", description);
    }

    [Fact]
    public void A_lost_silo_is_named_only_by_the_caller_that_knew_where_its_grain_lived()
    {
        var lost = ClusterFaults.Classify(new SiloLostException("generator", "run/0", "S127.0.0.3:11111:42", new SiloUnavailableException()));
        Assert.Equal((FaultKind.SiloLost, "S127.0.0.3:11111:42"), (lost.Kind, lost.LostSilo));
        Assert.Equal("the generator run/0 on silo S127.0.0.3:11111:42 became unreachable", lost.Description);
        // Orleans' own exception says nothing typed about the silo: no silo is guessed from its text.
        Assert.Null(ClusterFaults.Classify(new SiloUnavailableException("The target silo S127.0.0.3:11111:42 became unavailable")).LostSilo);
        Assert.Equal(FaultKind.Transient, ClusterFaults.Classify(new SiloLostException("learner", "run", null)).Kind);
    }

    [Fact]
    public void A_failed_reward_service_is_named_in_the_fault()
    {
        var fault = ClusterFaults.Classify(new AggregateException(new RefAlign.Compute.Rewards.RemoteRewardException("https://rm.example:8443", "3 tries failed; the last: score 0 is NaN")));
        Assert.Equal(FaultKind.Transient, fault.Kind);
        Assert.Contains("remote reward service https://rm.example:8443", fault.Description);
    }

    [Fact]
    public void Parallel_calls_fail_with_their_worst_fault()
    {
        Exception Of(params Exception[] inner) => new AggregateException(inner);
        Assert.Equal(FaultKind.Fatal, ClusterFaults.Classify(Of(new TimeoutException(), new InvalidOperationException())).Kind);
        var lost = ClusterFaults.Classify(Of(new TimeoutException(), new SiloUnavailableException(), new SiloLostException("generator", "r/1", "S1")));
        Assert.Equal((FaultKind.SiloLost, "S1"), (lost.Kind, lost.LostSilo));
        Assert.Equal(FaultKind.Transient, ClusterFaults.Classify(Of(new TimeoutException(), new IOException())).Kind);
    }
}
