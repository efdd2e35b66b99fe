using Wire = RefAlign.Client.Protos;

namespace RefAlign.Client;

/// <summary>The wire messages as the client's records. Proto enums start at UNSPECIFIED = 0, hence the explicit switches.</summary>
internal static class ProtoMapping
{
    public static RunStatus FromProto(this Wire.RunStatus s) => s switch
    {
        Wire.RunStatus.Running => RunStatus.Running,
        Wire.RunStatus.Stopping => RunStatus.Stopping,
        Wire.RunStatus.Stopped => RunStatus.Stopped,
        Wire.RunStatus.Completed => RunStatus.Completed,
        Wire.RunStatus.Failed => RunStatus.Failed,
        _ => RunStatus.Pending,
    };

    public static RunEventKind FromProto(this Wire.RunEventKind k) => k switch
    {
        Wire.RunEventKind.Step => RunEventKind.Step,
        Wire.RunEventKind.Phase => RunEventKind.Phase,
        Wire.RunEventKind.Eval => RunEventKind.Eval,
        Wire.RunEventKind.Checkpoint => RunEventKind.Checkpoint,
        _ => RunEventKind.Status,
    };

    public static RunSummary FromProto(this Wire.Run m) => new(
        m.RunId, m.Name, m.Algorithm, m.Status.FromProto(), m.Step, m.TotalSteps, m.WeightVersion,
        m.HasLatestCheckpoint ? m.LatestCheckpoint : null,
        m.CreatedAt?.ToDateTimeOffset() ?? default,
        m.HasError ? m.Error : null,
        new Dictionary<string, double>(m.LastMetrics),
        m.ConfigJson);

    public static RunEvent FromProto(this Wire.RunEvent m) => new(
        m.RunId, m.Sequence, m.Kind.FromProto(), m.Step,
        m.Time?.ToDateTimeOffset() ?? default,
        m.Status.FromProto(),
        new Dictionary<string, double>(m.Metrics),
        m.HasPhase ? m.Phase : null,
        m.HasPhaseSeconds ? m.PhaseSeconds : null,
        m.HasMessage ? m.Message : null);

    public static ClusterInfo FromProto(this Wire.Cluster m) => new(
        [.. m.Silos.Select(s => new SiloInfo(s.Address, s.Name, [.. s.Roles], s.Device, s.Status, s.ActiveGrains, s.Libtorch))],
        [.. m.Generators.Select(g => new GeneratorInfo(g.GrainId, g.RunId, g.WeightVersion, g.Silo))],
        [.. m.Placements.Select(p => new PlacementInfo(p.Kind, p.GrainKey, p.RunId, p.Silo, p.WeightVersion))]);

    public static Wire.EvaluateRunRequest ToProto(this RunEvalRequest r)
    {
        var m = new Wire.EvaluateRunRequest { RunId = r.RunId };
        m.Models.Add(r.Models);
        if (r.Examples is { } e) m.Examples = e;
        if (r.NumSamples is { } n) m.NumSamples = n;
        if (r.Seed is { } s) m.Seed = s;
        if (r.CorrectThreshold is { } t) m.CorrectThreshold = t;
        if (r.Bootstrap is { } b) m.Bootstrap = b;
        return m;
    }

    public static RunEvalUpdate FromProto(this Wire.EvaluateRunUpdate m) => new(m.Model, m.ModelIndex, m.Models, m.Done, m.Total,
        m.Result is null ? null : new RunEvalResult(
            [.. m.Result.Models.Select(e => new RunModelEvaluation(e.Model, e.Path, new Dictionary<string, double>(e.Metrics),
                [.. e.Samples.Select(s => new RunEvalSample(s.PromptId, s.Sample, s.Harmful, s.Answer, s.HasConfidence ? s.Confidence : null,
                    s.F1, s.Correct, s.Reward, s.Length))],
                e.HasF1Low ? e.F1Low : null, e.HasF1High ? e.F1High : null, [.. e.Notes]))],
            [.. m.Result.SideBySide.Select(s => new RunSideBySide(s.ModelA, s.ModelB, s.WinRate, s.Low, s.High, s.Wins, s.Ties, s.Losses))]));
}
