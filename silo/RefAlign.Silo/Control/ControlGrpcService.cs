using System.Text.RegularExpressions;
using Grpc.Core;
using RefAlign.Contracts.Control;
using RefAlign.Grains;
using RefAlign.Compute.Training;
using Wire = RefAlign.Client.Protos;

namespace RefAlign.Silo.Control;

/// <summary>
/// The gRPC face of <see cref="IRunControl"/>: maps messages and turns the control layer's exceptions into status codes.
/// A host maps it with <c>app.MapGrpcService&lt;ControlGrpcService&gt;()</c> after registering an <see cref="IRunControl"/>.
/// </summary>
internal sealed partial class ControlGrpcService(IRunControl control) : Wire.RunControl.RunControlBase
{
    /// <summary>Trailer that carries the JSON path of the invalid field of an INVALID_ARGUMENT reply.</summary>
    public const string FieldTrailer = "field";

    /// <summary>Trailer of an OUT_OF_RANGE watch: the oldest event sequence the run still keeps.</summary>
    public const string OldestSequenceTrailer = "oldest-sequence";

    public override Task<Wire.StartRunReply> StartRun(Wire.StartRunRequest request, ServerCallContext context) =>
        Guard(context, async () =>
        {
            if (string.IsNullOrWhiteSpace(request.ConfigJson))
                throw Invalid("config_json", "field 'config_json' must hold a run config (JSON).");
            var id = await control.StartRunAsync(request.ConfigJson, context.CancellationToken);
            return new Wire.StartRunReply { RunId = id };
        });

    public override Task<Wire.Run> GetRun(Wire.RunRef request, ServerCallContext context) =>
        Guard(context, async () => (await control.GetRunAsync(RunId(request.RunId), context.CancellationToken)).ToProto());

    public override Task<Wire.Run> StopRun(Wire.RunRef request, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var id = RunId(request.RunId);
            await control.StopRunAsync(id, context.CancellationToken);
            return (await control.GetRunAsync(id, context.CancellationToken)).ToProto();
        });

    public override Task<Wire.Run> ResumeRun(Wire.RunRef request, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var id = RunId(request.RunId);
            await control.ResumeRunAsync(id, context.CancellationToken);
            return (await control.GetRunAsync(id, context.CancellationToken)).ToProto();
        });

    public override Task<Wire.ListRunsReply> ListRuns(Wire.ListRunsRequest request, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var reply = new Wire.ListRunsReply();
            reply.Runs.Add((await control.ListRunsAsync(context.CancellationToken)).Select(r => r.ToProto()));
            return reply;
        });

    public override Task<Wire.Cluster> GetCluster(Wire.GetClusterRequest request, ServerCallContext context) =>
        Guard(context, async () => (await control.GetClusterAsync(context.CancellationToken)).ToProto());

    public override Task WatchRun(Wire.WatchRunRequest request, IServerStreamWriter<Wire.RunEvent> responseStream, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var id = RunId(request.RunId);
            if (request.AfterSequence < 0) throw Invalid("after_sequence", "field 'after_sequence' must be ≥ 0.");
            var ct = context.CancellationToken;
            await foreach (var e in control.WatchRunAsync(id, request.AfterSequence, ct).WithCancellation(ct))
                await responseStream.WriteAsync(e.ToProto(), ct);
            return true;
        });

    public override Task EvaluateRun(Wire.EvaluateRunRequest request, IServerStreamWriter<Wire.EvaluateRunUpdate> responseStream, ServerCallContext context) =>
        Guard(context, async () =>
        {
            var eval = new RunEvalRequest(RunId(request.RunId), [.. request.Models],
                request.HasExamples ? request.Examples : null, request.HasNumSamples ? request.NumSamples : null,
                request.HasSeed ? request.Seed : 1, request.HasCorrectThreshold ? request.CorrectThreshold : 0.9,
                request.HasBootstrap ? request.Bootstrap : 1000);
            var ct = context.CancellationToken;
            await foreach (var p in control.EvaluateRunAsync(eval, ct).WithCancellation(ct))
                await responseStream.WriteAsync(p.ToProto(), ct);
            return true;
        });

    static string RunId(string id) =>
        string.IsNullOrWhiteSpace(id) ? throw Invalid("run_id", "field 'run_id' must be set.") : id;

    static RpcException Invalid(string field, string message) =>
        new(new Status(StatusCode.InvalidArgument, message), new Metadata { { FieldTrailer, field } });

    /// <summary>One place for the exception → status mapping, so every call reports errors the same way.</summary>
    internal static async Task<T> Guard<T>(ServerCallContext context, Func<Task<T>> body)
    {
        try
        {
            return await body();
        }
        catch (InvalidRunConfigException e)
        {
            // The detail names the field for people; the trailer carries it for programs. An exception that crossed an
            // Orleans call without a codec for Field arrives with it unset: recover it from the message then.
            var field = FieldOf(e);
            throw Invalid(field, e.Message.Contains($"'{field}'", StringComparison.Ordinal) ? e.Message : $"field '{field}': {e.Message}");
        }
        catch (RunNotFoundException e)
        {
            throw new RpcException(new Status(StatusCode.NotFound, e.Message));
        }
        catch (ResourceExhaustedException e)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, e.Message));
        }
        catch (RunEventsTrimmedException e)
        {
            throw new RpcException(new Status(StatusCode.OutOfRange, e.Message),
                new Metadata { { OldestSequenceTrailer, e.OldestSequence.ToString(System.Globalization.CultureInfo.InvariantCulture) } });
        }
        catch (Exception e) when (ClusterFaults.IsTransient(e) && !context.CancellationToken.IsCancellationRequested)
        {
            // A silo of the cluster went away under the call (or the call timed out): the cluster recovers, so retry.
            throw new RpcException(new Status(StatusCode.Unavailable, $"the cluster could not answer right now ({e.GetType().Name}); retry."));
        }
        catch (ArgumentException e)
        {
            // No "field" trailer: a parameter name is not a JSON path of the config.
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }
        catch (InvalidOperationException e) when (e is not ObjectDisposedException)
        {
            // E.g. resuming a run that already completed: the call is fine, the run's state forbids it.
            throw new RpcException(new Status(StatusCode.FailedPrecondition, e.Message));
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled."));
        }
        catch (OperationCanceledException)
        {
            // Cancelled on the silo's side (shutdown, a grain call given up), not by the caller: a retry can succeed,
            // and UNAVAILABLE is what tells a watcher to reconnect rather than stop.
            throw new RpcException(new Status(StatusCode.Unavailable, "the silo cancelled the call (shutting down?); retry."));
        }
    }

    static string FieldOf(InvalidRunConfigException e)
    {
        if (!string.IsNullOrEmpty(e.Field)) return e.Field;
        var m = FieldInMessage().Match(e.Message);
        return m.Success ? m.Groups[1].Value : "$";
    }

    [GeneratedRegex("field '([^']+)'")]
    private static partial Regex FieldInMessage();

    static async Task Guard(ServerCallContext context, Func<Task<bool>> body) => await Guard<bool>(context, body);
}
