using System.Globalization;
using RefAlign.Grains;

namespace RefAlign.Silo.Hosting;

/// <summary>Reads <see cref="RunTimings"/> from the <c>Timing:</c> section; a bad value, or values that do not fit together, name their key.</summary>
public static class TimingsReader
{
    public static RunTimings Read(IConfiguration configuration)
    {
        var section = configuration.GetSection(RunTimings.Section);
        var d = new RunTimings();
        TimeSpan Span(string name, TimeSpan fallback) => Duration(section[name], $"{RunTimings.Section}:{name}") ?? fallback;
        var timings = new RunTimings
        {
            SupervisionPeriod = Span(nameof(RunTimings.SupervisionPeriod), d.SupervisionPeriod),
            WorkerRetryBudget = Span(nameof(RunTimings.WorkerRetryBudget), d.WorkerRetryBudget),
            RetryFirstDelay = Span(nameof(RunTimings.RetryFirstDelay), d.RetryFirstDelay),
            RetryMaxDelay = Span(nameof(RunTimings.RetryMaxDelay), d.RetryMaxDelay),
            RestartBackoff = Span(nameof(RunTimings.RestartBackoff), d.RestartBackoff),
            RestartBackoffMax = Span(nameof(RunTimings.RestartBackoffMax), d.RestartBackoffMax),
            LearnerSiloPoll = Span(nameof(RunTimings.LearnerSiloPoll), d.LearnerSiloPoll),
            ReplicaGrace = Span(nameof(RunTimings.ReplicaGrace), d.ReplicaGrace),
            OfferFloor = Span(nameof(RunTimings.OfferFloor), d.OfferFloor),
            LearnerReleaseDelay = Span(nameof(RunTimings.LearnerReleaseDelay), d.LearnerReleaseDelay),
            StateWriteRetryLimit = Span(nameof(RunTimings.StateWriteRetryLimit), d.StateWriteRetryLimit),
            ProbeTimeout = Span(nameof(RunTimings.ProbeTimeout), d.ProbeTimeout),
            MissedProbesLimit = Count(section[nameof(RunTimings.MissedProbesLimit)], $"{RunTimings.Section}:{nameof(RunTimings.MissedProbesLimit)}") ?? d.MissedProbesLimit,
            MembershipRefresh = Span(nameof(RunTimings.MembershipRefresh), d.MembershipRefresh),
        };
        if (timings.Problems().FirstOrDefault() is ({ } setting, { } problem))
            throw new SiloConfigurationException($"{RunTimings.Section}:{setting}", problem);
        return timings;
    }

    /// <summary>"00:00:30" or plain seconds ("30"); null when unset.</summary>
    internal static TimeSpan? Duration(string? value, string key)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0 && double.IsFinite(seconds)
            && seconds <= TimeSpan.MaxValue.TotalSeconds / 2)
            return TimeSpan.FromSeconds(seconds);
        return TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out var span) && span >= TimeSpan.Zero
            ? span
            : throw new SiloConfigurationException(key, $"'{value}' is not a duration (seconds or hh:mm:ss).");
    }

    static int? Count(string? value, string key) =>
        string.IsNullOrWhiteSpace(value) ? null
        : int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n
        : throw new SiloConfigurationException(key, $"'{value}' is not a whole number.");
}
