using Grpc.Core;

namespace RefAlign.Client;

/// <summary>Reading the control API's errors.</summary>
public static class RpcErrors
{
    /// <summary>JSON path of the invalid field of an INVALID_ARGUMENT error (the "field" trailer), or null.</summary>
    public static string? Field(this RpcException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return e.Trailers.GetValue("field");
    }

    /// <summary>
    /// The oldest event sequence a run still keeps, from the OUT_OF_RANGE error of a watch that asked for older events
    /// (watch again with <c>afterSequence = oldest - 1</c>); null for any other error.
    /// </summary>
    public static long? OldestSequence(this RpcException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return e.StatusCode == StatusCode.OutOfRange && long.TryParse(e.Trailers.GetValue("oldest-sequence"), out var oldest) ? oldest : null;
    }

    /// <summary>"invalid argument", "not found", "unauthenticated"...: the status code as words for a message.</summary>
    public static string Describe(StatusCode code) => code switch
    {
        StatusCode.InvalidArgument => "invalid argument",
        StatusCode.NotFound => "not found",
        StatusCode.AlreadyExists => "already exists",
        StatusCode.PermissionDenied => "permission denied",
        StatusCode.Unauthenticated => "unauthenticated",
        StatusCode.FailedPrecondition => "failed precondition",
        StatusCode.DeadlineExceeded => "deadline exceeded",
        StatusCode.ResourceExhausted => "resource exhausted",
        StatusCode.Unavailable => "unavailable",
        StatusCode.Cancelled => "cancelled",
        StatusCode.Unimplemented => "unimplemented",
        StatusCode.Internal => "internal error",
        StatusCode.Aborted => "aborted",
        StatusCode.OutOfRange => "out of range",
        StatusCode.DataLoss => "data loss",
        _ => "error",
    };
}
