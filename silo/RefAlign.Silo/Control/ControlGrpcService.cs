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
internal sealed class ControlGrpcService(IRunControl control) : Wire.RunControl.RunControlBase
{
    /// <summary>Trailer that carries the JSON path of the invalid field of an INVALID_ARGUMENT reply.</summary>
    public const string FieldTrailer = StatusMapping.FieldTrailer;

    /// <summary>Trailer of an OUT_OF_RANGE watch: the oldest event sequence the run still keeps.</summary>
    public const string OldestSequenceTrailer = StatusMapping.OldestSequenceTrailer;

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

    static RpcException Invalid(string field, string message) => StatusMapping.Invalid(field, message);

    /// <summary>Every call reports errors the same way (<see cref="StatusMapping"/>).</summary>
    internal static Task<T> Guard<T>(ServerCallContext context, Func<Task<T>> body) => StatusMapping.Guard(context, body);

    static async Task Guard(ServerCallContext context, Func<Task<bool>> body) => await Guard<bool>(context, body);
}
