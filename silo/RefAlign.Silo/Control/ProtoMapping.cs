using Google.Protobuf.WellKnownTypes;
using RefAlign.Contracts.Control;
using Wire = RefAlign.Client.Protos;

namespace RefAlign.Silo.Control;

/// <summary>The contracts' control records as wire messages. Proto enums start at UNSPECIFIED = 0, hence the explicit switches.</summary>
internal static class ProtoMapping
{
    public static Wire.RunStatus ToProto(this RunStatus s) => s switch
    {
        RunStatus.Pending => Wire.RunStatus.Pending,
        RunStatus.Running => Wire.RunStatus.Running,
        RunStatus.Stopping => Wire.RunStatus.Stopping,
        RunStatus.Stopped => Wire.RunStatus.Stopped,
        RunStatus.Completed => Wire.RunStatus.Completed,
        RunStatus.Failed => Wire.RunStatus.Failed,
        _ => Wire.RunStatus.Unspecified,
    };

    public static Wire.RunEventKind ToProto(this RunEventKind k) => k switch
    {
        RunEventKind.Status => Wire.RunEventKind.Status,
        RunEventKind.Step => Wire.RunEventKind.Step,
        RunEventKind.Phase => Wire.RunEventKind.Phase,
        RunEventKind.Eval => Wire.RunEventKind.Eval,
        RunEventKind.Checkpoint => Wire.RunEventKind.Checkpoint,
        _ => Wire.RunEventKind.Unspecified,
    };

    public static Wire.Run ToProto(this RunSummary r)
    {
        var m = new Wire.Run
        {
            RunId = r.RunId,
            Name = r.Name,
            Algorithm = r.Algorithm,
            Status = r.Status.ToProto(),
            Step = r.Step,
            TotalSteps = r.TotalSteps,
            WeightVersion = r.WeightVersion,
            CreatedAt = Timestamp.FromDateTimeOffset(r.CreatedAt),
            ConfigJson = r.ConfigJson,
        };
        if (r.LatestCheckpoint is not null) m.LatestCheckpoint = r.LatestCheckpoint;
        if (r.Error is not null) m.Error = r.Error;
        foreach (var (k, v) in r.LastMetrics) m.LastMetrics[k] = v;
        return m;
    }

    public static Wire.RunEvent ToProto(this RunEvent e)
    {
        var m = new Wire.RunEvent
        {
            RunId = e.RunId,
            Sequence = e.Sequence,
            Kind = e.Kind.ToProto(),
            Step = e.Step,
            Time = Timestamp.FromDateTimeOffset(e.Time),
            Status = e.Status.ToProto(),
        };
        foreach (var (k, v) in e.Metrics) m.Metrics[k] = v;
        if (e.Phase is not null) m.Phase = e.Phase;
        if (e.PhaseSeconds is { } s) m.PhaseSeconds = s;
        if (e.Message is not null) m.Message = e.Message;
        return m;
    }

    public static Wire.Cluster ToProto(this ClusterInfo c)
    {
        var m = new Wire.Cluster();
        foreach (var s in c.Silos)
        {
            var silo = new Wire.Silo { Address = s.Address, Name = s.Name, Device = s.Device, Status = s.Status, ActiveGrains = s.ActiveGrains, Libtorch = s.Libtorch };
            silo.Roles.Add(s.Roles);
            m.Silos.Add(silo);
        }
        foreach (var g in c.Generators)
            m.Generators.Add(new Wire.Generator { GrainId = g.GrainId, RunId = g.RunId, WeightVersion = g.WeightVersion, Silo = g.Silo });
        foreach (var p in c.Placements)
            m.Placements.Add(new Wire.Placement { Kind = p.Kind, GrainKey = p.GrainKey, RunId = p.RunId, Silo = p.Silo, WeightVersion = p.WeightVersion });
        return m;
    }

    public static Wire.EvaluateRunUpdate ToProto(this RunEvalProgress p)
    {
        var m = new Wire.EvaluateRunUpdate { Model = p.Model, ModelIndex = p.ModelIndex, Models = p.Models, Done = p.Done, Total = p.Total };
        if (p.Result is not { } result) return m;
        m.Result = new Wire.EvaluationResult();
        foreach (var e in result.Models)
        {
            var model = new Wire.ModelEvaluation { Model = e.Model, Path = e.Path };
            foreach (var (k, v) in e.Metrics) model.Metrics[k] = v;
            if (e.F1Low is { } low) model.F1Low = low;
            if (e.F1High is { } high) model.F1High = high;
            model.Notes.Add(e.Notes);
            foreach (var s in e.Samples)
            {
                var sample = new Wire.EvalSample
                {
                    PromptId = s.PromptId, Sample = s.Sample, Harmful = s.Harmful, Answer = s.Answer, F1 = s.F1,
                    Correct = s.Correct, Reward = s.Reward, Length = s.Length,
                };
                if (s.Confidence is { } c) sample.Confidence = c;
                model.Samples.Add(sample);
            }
            m.Result.Models.Add(model);
        }
        foreach (var s in result.SideBySide)
            m.Result.SideBySide.Add(new Wire.SideBySide
            {
                ModelA = s.ModelA, ModelB = s.ModelB, WinRate = s.WinRate, Low = s.Low, High = s.High, Wins = s.Wins, Ties = s.Ties, Losses = s.Losses,
            });
        return m;
    }
}
