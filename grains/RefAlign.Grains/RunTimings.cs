namespace RefAlign.Grains;

/// <summary>
/// Every timeout, backoff, retry budget and deadline of the run core (<c>Timing:</c> in appsettings.json). Values that
/// must agree are derived here, once: a worker call retries for <see cref="WorkerRetryBudget"/>, which must outlast the
/// membership's death declaration, and the prompted-pass hand-off (offer ceiling, replica call) gets the same budget.
/// </summary>
public sealed record RunTimings
{
    public const string Section = "Timing";

    /// <summary>Period of each running run's supervision reminder (restarts a run whose grain's silo was lost).</summary>
    public TimeSpan SupervisionPeriod { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>How long a worker call is sent again after transient failures (its silo lost, re-placed elsewhere).</summary>
    public TimeSpan WorkerRetryBudget { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>First pause between two tries of a worker call; doubles up to <see cref="RetryMaxDelay"/>.</summary>
    public TimeSpan RetryFirstDelay { get; init; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan RetryMaxDelay { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Pause before the first restart of a failed attempt; doubles per consecutive failure up to <see cref="RestartBackoffMax"/>.</summary>
    public TimeSpan RestartBackoff { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan RestartBackoffMax { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>How often a run with no learner silo in the cluster looks again.</summary>
    public TimeSpan LearnerSiloPoll { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long a Sr-* step waits for its prompted-pass replica to hold the step's weights.</summary>
    public TimeSpan ReplicaGrace { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The least a learner waits for an offered prompted pass (the round trip), whatever its own pass took.</summary>
    public TimeSpan OfferFloor { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long an ended run's learner stays loaded (a prompt resume finds it).</summary>
    public TimeSpan LearnerReleaseDelay { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>How long a run's state write is retried while grain storage is unreachable.</summary>
    public TimeSpan StateWriteRetryLimit { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Membership's failure detector: one probe's timeout (Orleans' <c>ProbeTimeout</c>).</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Missed probes before a silo suspects another (Orleans' <c>NumMissedProbesLimit</c>).</summary>
    public int MissedProbesLimit { get; init; } = 3;

    /// <summary>How often each silo re-reads the membership table (Orleans' <c>TableRefreshTimeout</c>).</summary>
    public TimeSpan MembershipRefresh { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The most a learner waits for an offered prompted pass: a replica later than a worker call's budget is lost.</summary>
    public TimeSpan OfferCeiling => WorkerRetryBudget;

    /// <summary>A call to the prompted-pass replica is given up after the same budget.</summary>
    public TimeSpan RefineTimeout => WorkerRetryBudget;

    /// <summary>A lost silo counts once per this long: until membership declares it dead, every attempt meets it again.</summary>
    public TimeSpan LostSiloGrace => WorkerRetryBudget;

    /// <summary>Roughly how long membership takes to declare a silent silo dead.</summary>
    public TimeSpan DeathDeclaration => ProbeTimeout * (MissedProbesLimit + 1) + MembershipRefresh;

    /// <summary>Pause before restart number <paramref name="restarts"/> (1 for the first).</summary>
    public TimeSpan Backoff(int restarts) =>
        TimeSpan.FromTicks((long)Math.Min(RestartBackoff.Ticks * Math.Pow(2, Math.Max(0, restarts - 1)), RestartBackoffMax.Ticks));

    /// <summary>Pause after try number <paramref name="attempt"/> (1 for the first) of a worker call.</summary>
    public TimeSpan RetryDelay(int attempt) =>
        TimeSpan.FromTicks((long)Math.Min(RetryFirstDelay.Ticks * Math.Pow(2, Math.Max(0, attempt - 1)), RetryMaxDelay.Ticks));

    /// <summary>
    /// How long a step waits for its offered prompted pass: twice its own plain pass so far (a replica later than that
    /// saves nothing), between <see cref="OfferFloor"/> and <see cref="OfferCeiling"/>.
    /// </summary>
    public TimeSpan OfferPatience(TimeSpan plainPass) =>
        TimeSpan.FromTicks(Math.Clamp(2 * plainPass.Ticks, OfferFloor.Ticks, Math.Max(OfferFloor.Ticks, OfferCeiling.Ticks)));

    /// <summary>The problems of these values, each as (setting, problem); empty when they are usable together.</summary>
    public IEnumerable<(string Setting, string Problem)> Problems()
    {
        var spans = new (string Name, TimeSpan Value, TimeSpan Least)[]
        {
            (nameof(SupervisionPeriod), SupervisionPeriod, TimeSpan.FromSeconds(1)),
            (nameof(WorkerRetryBudget), WorkerRetryBudget, TimeSpan.FromSeconds(1)),
            (nameof(RetryFirstDelay), RetryFirstDelay, TimeSpan.FromMilliseconds(1)),
            (nameof(RetryMaxDelay), RetryMaxDelay, RetryFirstDelay),
            (nameof(RestartBackoff), RestartBackoff, TimeSpan.Zero),
            (nameof(RestartBackoffMax), RestartBackoffMax, RestartBackoff),
            (nameof(LearnerSiloPoll), LearnerSiloPoll, TimeSpan.FromMilliseconds(10)),
            (nameof(ReplicaGrace), ReplicaGrace, TimeSpan.Zero),
            (nameof(OfferFloor), OfferFloor, TimeSpan.Zero),
            (nameof(LearnerReleaseDelay), LearnerReleaseDelay, TimeSpan.Zero),
            (nameof(StateWriteRetryLimit), StateWriteRetryLimit, TimeSpan.Zero),
            (nameof(ProbeTimeout), ProbeTimeout, TimeSpan.FromMilliseconds(100)),
            (nameof(MembershipRefresh), MembershipRefresh, TimeSpan.FromSeconds(1)),
        };
        foreach (var (name, value, least) in spans)
            if (value < least) yield return (name, $"{value:c} is shorter than {least:c}.");
        if (MissedProbesLimit < 1) yield return (nameof(MissedProbesLimit), $"{MissedProbesLimit} is not a positive count.");
        // A worker call that gives up before membership has declared its silo dead fails the step instead of landing elsewhere.
        if (WorkerRetryBudget < DeathDeclaration)
            yield return (nameof(WorkerRetryBudget), $"{WorkerRetryBudget:c} is shorter than membership needs to declare a silo dead " +
                $"({DeathDeclaration:c} = ProbeTimeout × (MissedProbesLimit + 1) + MembershipRefresh).");
    }
}
