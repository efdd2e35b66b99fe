using Orleans.Serialization;
using RefAlign.Grains;

namespace RefAlign.Cluster.Tests;

/// <summary>Which failures a run retries (a lost or busy cluster) and which fail it (a bug or a bad config).</summary>
public sealed class ClusterFaultsTests
{
    [Fact]
    public void The_runtime_s_own_timeouts_are_retried_even_when_they_arrive_as_a_codec_error()
    {
        // After a full cluster restart CI saw a run fail with this: the runtime's Polly timeout, which cannot be
        // serialized back to the caller, reached the run loop as a codec error.
        Assert.True(ClusterFaults.IsTransient(new Polly.Timeout.TimeoutRejectedException()));
        Assert.True(ClusterFaults.IsTransient(new CodecNotFoundException("Could not find a codec for type Polly.Timeout.TimeoutRejectedException.")));
        // Any other missing codec is a bug, and fails the run at once.
        Assert.False(ClusterFaults.IsTransient(new CodecNotFoundException("Could not find a codec for type RefAlign.Contracts.Messages.Something.")));
        Assert.False(ClusterFaults.IsTransient(new InvalidOperationException("a bug")));
        Assert.True(ClusterFaults.IsTransient(new LearnerNotReadyException("run")));
    }
}
