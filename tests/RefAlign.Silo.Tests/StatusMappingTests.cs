using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Grpc.Core;
using RefAlign.Compute;
using RefAlign.Compute.Files;
using RefAlign.Compute.Models;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Grains.Artifacts;
using RefAlign.Silo.Control;
using StackExchange.Redis;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Every kind of exception that can reach the gRPC boundary becomes a status code with a sentence for the operator;
/// none is UNKNOWN. The exceptions are real ones, raised by the parts that raise them.
/// </summary>
public sealed class StatusMappingTests
{
    static RpcException Map(Exception e, bool cancelled = false) => StatusMapping.ToRpc(e, cancelled);

    static Exception Caught(Action action) => Record.Exception(action) ?? throw new InvalidOperationException("nothing was thrown");

    public static TheoryData<string, Exception, StatusCode, string> Kinds() => new()
    {
        { "invalid config", new InvalidRunConfigException("data.path", "field 'data.path' is wrong."), StatusCode.InvalidArgument, "data.path" },
        { "invalid artifact", new InvalidArtifactException("name", "field 'name' is wrong."), StatusCode.InvalidArgument, "name" },
        { "run not found", new RunNotFoundException("r1"), StatusCode.NotFound, "r1" },
        { "artifact not found", new ArtifactNotFoundException("models/x"), StatusCode.NotFound, "models/x" },
        { "quota", new ResourceExhaustedException("over Limits:MaxConcurrentRuns"), StatusCode.ResourceExhausted, "Limits:MaxConcurrentRuns" },
        { "model too large", new ModelTooLargeException("config.json: needs 30 GB (vocab_size 1)"), StatusCode.ResourceExhausted, "vocab_size" },
        { "out of memory", new OutOfMemoryException(), StatusCode.ResourceExhausted, "ran out of memory" },
        { "events trimmed", new RunEventsTrimmedException("r1", 42), StatusCode.OutOfRange, "42" },
        { "data loss", new ArtifactDataLossException("the chunk at byte 0 does not match"), StatusCode.DataLoss, "byte 0" },
        { "offset", new PushOffsetMismatchException(10, 0), StatusCode.FailedPrecondition, "resume from 10" },
        { "incomplete", new IncompletePushException("the push ended after 3 of 9 bytes"), StatusCode.FailedPrecondition, "3 of 9" },
        { "busy", new ArtifactBusyException("another push", new IOException("locked")), StatusCode.Aborted, "another push" },
        { "model format", new ModelFormatException("x/config.json: field 'hidden_size' is 0"), StatusCode.InvalidArgument, "hidden_size" },
        { "outside roots", new OutsideRootsException("/m/w", true, "/m/w: resolves outside the silo's read roots"), StatusCode.InvalidArgument, "read roots" },
        { "non-finite step", new NonFiniteStepException(3, "loss", double.PositiveInfinity, "nothing was applied"), StatusCode.InvalidArgument, "step 3" },
        { "state forbids", new InvalidOperationException("run 'r1' is completed"), StatusCode.FailedPrecondition, "completed" },
        { "argument", new ArgumentException("the value of x is bad"), StatusCode.InvalidArgument, "value of x" },
        { "silo lost", new SiloUnavailableException("silo S1 is dead"), StatusCode.Unavailable, "retry" },
        { "timeout", new TimeoutException("the call timed out"), StatusCode.Unavailable, "retry" },
        { "io", new IOException("connection reset"), StatusCode.Unavailable, "retry" },
        { "bug", new NullReferenceException(), StatusCode.Internal, "bug to report" },
        { "unknown kind", new FormatException("odd"), StatusCode.Internal, "FormatException" },
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Each_kind_has_its_code_and_a_sentence(string label, Exception e, StatusCode code, string names)
    {
        var rpc = Map(e);
        Assert.True(rpc.StatusCode == code, $"{label}: {rpc.StatusCode} {rpc.Status.Detail}");
        Assert.Contains(names, rpc.Status.Detail);
        Assert.NotEqual(StatusCode.Unknown, rpc.StatusCode);
        Assert.True(rpc.Status.Detail.Length > 10, label);
    }

    [Fact]
    public void Fields_and_resume_points_travel_as_trailers()
    {
        Assert.Equal("data.path", Map(new InvalidRunConfigException("data.path", "field 'data.path' x")).Trailers.GetValue(StatusMapping.FieldTrailer));
        // Crossed an Orleans call without its Field: recovered from the message.
        Assert.Equal("policy.model", Map(new InvalidRunConfigException("", "field 'policy.model' is bad")).Trailers.GetValue(StatusMapping.FieldTrailer));
        Assert.Equal("10", Map(new PushOffsetMismatchException(10, 0)).Trailers.GetValue(StatusMapping.ReceivedBytesTrailer));
        Assert.Equal("42", Map(new RunEventsTrimmedException("r", 42)).Trailers.GetValue(StatusMapping.OldestSequenceTrailer));
    }

    [Fact]
    public void Cancellation_is_cancelled_for_the_caller_and_unavailable_for_the_silo()
    {
        Assert.Equal(StatusCode.Cancelled, Map(new OperationCanceledException(), cancelled: true).StatusCode);
        Assert.Equal(StatusCode.Unavailable, Map(new TaskCanceledException()).StatusCode);
    }

    [Fact]
    public void A_libtorch_error_is_internal_with_its_first_line()
    {
        // What TorchSharp raises for an error libtorch reports (torch.CheckForErrors), with libtorch's multi-line text.
        // Raised here by hand: on this machine's libstdc++ a failing libtorch check aborts the process before TorchSharp
        // can turn it into this exception (docs/security.md), which is why admission checks every size first.
        var e = new ExternalException("mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)\nException raised from meta at aten/src/ATen/native/LinearAlgebra.cpp:191");
        var rpc = Map(e);
        Assert.Equal(StatusCode.Internal, rpc.StatusCode);
        Assert.Contains("libtorch", rpc.Status.Detail);
        Assert.Contains("cannot be multiplied", rpc.Status.Detail);
        Assert.DoesNotContain("\n", rpc.Status.Detail);
    }

    [Fact]
    public void A_redis_that_cannot_be_reached_is_unavailable_naming_the_store()
    {
        // A real connection attempt to a port nothing listens on: the exception StackExchange.Redis raises.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var e = Caught(() =>
        {
            var options = ConfigurationOptions.Parse($"127.0.0.1:{port}");
            options.AbortOnConnectFail = true;
            options.ConnectTimeout = 2000;
            using var redis = ConnectionMultiplexer.Connect(options);
        });
        Assert.IsAssignableFrom<RedisException>(e);
        // As a grain call surfaces it: wrapped by Orleans.
        var rpc = Map(new Orleans.Runtime.OrleansException("the membership table could not be read", e));
        Assert.Equal(StatusCode.Unavailable, rpc.StatusCode);
        Assert.Contains("Redis", rpc.Status.Detail);
        Assert.Contains("Cluster:ConnectionString", rpc.Status.Detail);
        Assert.Contains("retried", rpc.Status.Detail);
    }
}
