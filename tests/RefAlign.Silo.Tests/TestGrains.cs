using Orleans.Runtime;
using RefAlign.Runtime;
using RefAlign.Compute.Telemetry;

namespace RefAlign.Silo.Tests;

/// <summary>What a probe grain saw: where it ran and on which thread its compute work ran.</summary>
[GenerateSerializer, Immutable]
public sealed record ProbeResult(
    [property: Id(0)] string Silo,
    [property: Id(1)] int ComputeThreadId,
    [property: Id(2)] bool RanOnComputeThread,
    [property: Id(3)] string? ComputeThreadName);

public interface ITracingProbeGrain : IGrainWithStringKey
{
    Task<ProbeResult> RunStepAsync(string runId, int step, long weightVersion);
}

public interface ILearnPhaseGrain : IGrainWithStringKey
{
    Task<ProbeResult> LearnAsync(string runId, int step, long weightVersion);
}

/// <summary>A step span that calls another grain, whose phase span runs its work on the compute executor.</summary>
public sealed class TracingProbeGrain : Grain, ITracingProbeGrain
{
    public async Task<ProbeResult> RunStepAsync(string runId, int step, long weightVersion)
    {
        using var span = TrainingTelemetry.StartPhase(TrainingTelemetry.Phases.Step, runId, step, weightVersion);
        return await GrainFactory.GetGrain<ILearnPhaseGrain>($"{runId}/learner").LearnAsync(runId, step, weightVersion);
    }
}

public sealed class LearnPhaseGrain(ComputeExecutor executor, ILocalSiloDetails silo) : Grain, ILearnPhaseGrain
{
    public async Task<ProbeResult> LearnAsync(string runId, int step, long weightVersion)
    {
        using var span = TrainingTelemetry.StartPhase(TrainingTelemetry.Phases.Learn, runId, step, weightVersion);
        span?.SetTag(TrainingTelemetry.Tags.Shard, 0);
        var (id, onCompute, name) = await executor.RunAsync(() =>
            (Environment.CurrentManagedThreadId, executor.IsOnComputeThread, Thread.CurrentThread.Name));
        return new ProbeResult(silo.SiloAddress.ToString(), id, onCompute, name);
    }
}

public interface IPlacementProbeGrain : IGrainWithIntegerKey
{
    Task<string> WhereAsync();
}

public interface ILearnerProbeGrain : IPlacementProbeGrain;

public interface IGeneratorProbeGrain : IPlacementProbeGrain;

public interface IReferenceProbeGrain : IPlacementProbeGrain;

public interface IOrphanProbeGrain : IPlacementProbeGrain;

public abstract class PlacementProbeGrain(ILocalSiloDetails silo) : Grain
{
    public Task<string> WhereAsync() => Task.FromResult(silo.SiloAddress.ToString());
}

[RolePlacement(SiloRoles.Learner)]
public sealed class LearnerProbeGrain(ILocalSiloDetails silo) : PlacementProbeGrain(silo), ILearnerProbeGrain;

[RolePlacement(SiloRoles.Generator)]
public sealed class GeneratorProbeGrain(ILocalSiloDetails silo) : PlacementProbeGrain(silo), IGeneratorProbeGrain;

[RolePlacement(SiloRoles.Reference)]
public sealed class ReferenceProbeGrain(ILocalSiloDetails silo) : PlacementProbeGrain(silo), IReferenceProbeGrain;

/// <summary>A role no silo has: placement must fall back instead of failing.</summary>
[RolePlacement("tokenizer")]
public sealed class OrphanProbeGrain(ILocalSiloDetails silo) : PlacementProbeGrain(silo), IOrphanProbeGrain;
