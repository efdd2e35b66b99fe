using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Grpc.Core;
using RefAlign.Compute;
using RefAlign.Compute.Files;
using RefAlign.Compute.Models;
using RefAlign.Compute.Training;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Grains.Artifacts;

namespace RefAlign.Silo.Control;

/// <summary>
/// The one place where an exception that reaches the gRPC boundary becomes a status code and a sentence for the
/// operator, for every service (runs, artifacts). Nothing leaves as UNKNOWN: an exception no rule names is INTERNAL,
/// with its kind and first line, and is logged whole.
/// </summary>
internal static partial class StatusMapping
{
    /// <summary>Trailer that carries the JSON path of the invalid field of an INVALID_ARGUMENT reply.</summary>
    public const string FieldTrailer = "field";

    /// <summary>Trailer of an OUT_OF_RANGE watch: the oldest event sequence the run still keeps.</summary>
    public const string OldestSequenceTrailer = "oldest-sequence";

    /// <summary>Trailer of a FAILED_PRECONDITION push: the bytes the silo holds, where the push must resume.</summary>
    public const string ReceivedBytesTrailer = "received-bytes";

    /// <summary>Runs <paramref name="body"/>; whatever it throws leaves as <see cref="ToRpc"/> maps it.</summary>
    public static async Task<T> Guard<T>(ServerCallContext context, Func<Task<T>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (e is not RpcException)
        {
            var rpc = ToRpc(e, context.CancellationToken.IsCancellationRequested);
            if (rpc.StatusCode == StatusCode.Internal)
                context.GetHttpContext().RequestServices.GetService<ILoggerFactory>()?.CreateLogger("RefAlign.Silo.Control")
                    .LogError(e, "{Method} failed with an unexpected {Type}", context.Method, e.GetType().FullName);
            throw rpc;
        }
    }

    /// <summary>The status <paramref name="e"/> stands for; <paramref name="callerCancelled"/>: the caller gave up the call.</summary>
    public static RpcException ToRpc(Exception e, bool callerCancelled)
    {
        switch (e)
        {
            case RpcException rpc:
                return rpc;
            case InvalidRunConfigException c:
                // The detail names the field for people; the trailer carries it for programs. An exception that crossed an
                // Orleans call without a codec for Field arrives with it unset: recover it from the message then.
                var field = FieldOf(c);
                return Invalid(field, c.Message.Contains($"'{field}'", StringComparison.Ordinal) ? c.Message : $"field '{field}': {c.Message}");
            case InvalidArtifactException a:
                return Invalid(a.Field, a.Message);
            case RunNotFoundException or ArtifactNotFoundException:
                return Status(StatusCode.NotFound, e.Message);
            case ResourceExhaustedException or ModelTooLargeException:
                return Status(StatusCode.ResourceExhausted, e.Message);
            case OutOfMemoryException or InsufficientMemoryException:
                return Status(StatusCode.ResourceExhausted, $"the silo ran out of memory on this call ({e.Message}); ask for less (Limits: in its appsettings.json bound each request).");
            case RunEventsTrimmedException t:
                return new RpcException(new Status(StatusCode.OutOfRange, t.Message),
                    new Metadata { { OldestSequenceTrailer, t.OldestSequence.ToString(CultureInfo.InvariantCulture) } });
            case ArtifactDataLossException:
                return Status(StatusCode.DataLoss, e.Message);
            case PushOffsetMismatchException m:
                return new RpcException(new Status(StatusCode.FailedPrecondition, m.Message),
                    new Metadata { { ReceivedBytesTrailer, m.Received.ToString(CultureInfo.InvariantCulture) } });
            case IncompletePushException:
                return Status(StatusCode.FailedPrecondition, e.Message);
            case ArtifactBusyException:
                return Status(StatusCode.Aborted, e.Message);
            case ModelFormatException or OutsideRootsException or NonFiniteStepException:
                return Status(StatusCode.InvalidArgument, e.Message);
        }
        if (Redis(e) is { } store)
            return Status(StatusCode.Unavailable, $"{store} cannot be reached ({Brief(Innermost(e))}); the call can be retried once it is back.");
        if (ClusterFaults.IsTransient(e) && !callerCancelled && e is not OperationCanceledException)
            // A silo of the cluster went away under the call (or the call timed out): the cluster recovers, so retry.
            return Status(StatusCode.Unavailable, $"the cluster could not answer right now ({e.GetType().Name}); retry.");
        switch (e)
        {
            case OperationCanceledException when callerCancelled:
                return Status(StatusCode.Cancelled, "the call was cancelled.");
            case OperationCanceledException:
                // Cancelled on the silo's side (shutdown, a grain call given up), not by the caller: a retry can succeed,
                // and UNAVAILABLE is what tells a watcher to reconnect rather than stop.
                return Status(StatusCode.Unavailable, "the silo cancelled the call (shutting down?); retry.");
            case ExternalException:
                // TorchSharp reports libtorch's own errors so: a tensor operation the request's inputs led to failed.
                return Status(StatusCode.Internal,
                    $"the compute library (libtorch) failed on this request: {FirstLine(e)}. The model folder or the request's sizes may not fit each other; the silo's log has the details.");
            case ArgumentException:
                // No "field" trailer: a parameter name is not a JSON path of the config.
                return Status(StatusCode.InvalidArgument, e.Message);
            case InvalidOperationException when e is not ObjectDisposedException:
                // E.g. resuming a run that already completed: the call is fine, the run's state forbids it.
                return Status(StatusCode.FailedPrecondition, e.Message);
            default:
                return Status(StatusCode.Internal,
                    $"the silo failed on this call ({e.GetType().Name}: {FirstLine(e)}); this is a bug to report, with the silo's log, which has the details.");
        }
    }

    static RpcException Status(StatusCode code, string message) => new(new Status(code, message));

    public static RpcException Invalid(string field, string message) =>
        new(new Status(StatusCode.InvalidArgument, message), new Metadata { { FieldTrailer, field } });

    /// <summary>
    /// The store a Redis failure in <paramref name="e"/>'s chain belongs to, as the operator configures it, or null. The
    /// membership table and grain state may live on different Redis servers: the failing call's stack says which.
    /// </summary>
    static string? Redis(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is not StackExchange.Redis.RedisException and not StackExchange.Redis.RedisTimeoutException
                && x.GetType().FullName?.Contains("Redis", StringComparison.Ordinal) != true) continue;
            var trace = e.ToString();
            if (trace.Contains("Clustering", StringComparison.Ordinal) || trace.Contains("Membership", StringComparison.Ordinal))
                return "the cluster's membership store (Redis, Cluster:ConnectionString)";
            if (trace.Contains("Persistence", StringComparison.Ordinal) || trace.Contains("Storage", StringComparison.Ordinal))
                return "the cluster's grain state store (Redis, GrainStorage:ConnectionString)";
            return "the cluster's membership or grain state store (Redis, Cluster:ConnectionString / GrainStorage:ConnectionString)";
        }
        return null;
    }

    static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e;
    }

    static string FirstLine(Exception e) => e.Message.Split('\n', 2)[0].Trim();

    /// <summary>The gist of a client library's message: StackExchange.Redis appends a page of connection diagnostics.</summary>
    static string Brief(Exception e)
    {
        var line = FirstLine(e);
        var cut = line.IndexOfAny(['(', ';']);
        line = (cut > 0 ? line[..cut] : line).Trim();
        return line.Length > 160 ? line[..160] + "…" : line;
    }

    static string FieldOf(InvalidRunConfigException e)
    {
        if (!string.IsNullOrEmpty(e.Field)) return e.Field;
        var m = FieldInMessage().Match(e.Message);
        return m.Success ? m.Groups[1].Value : "$";
    }

    [GeneratedRegex("field '([^']+)'")]
    private static partial Regex FieldInMessage();
}
