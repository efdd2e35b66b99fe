using System.Text.Json.Serialization;

namespace RefAlign.Compute.Training.Optimization;

/// <summary>Which update rule <see cref="PolicyOptimizer"/> applies.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<OptimizerKind>))]
public enum OptimizerKind
{
    /// <summary>torch.optim.RMSprop (no momentum, not centered; weight decay is an L2 term added to the gradient). The paper's optimizer.</summary>
    [JsonStringEnumMemberName("rmsprop")] RmsProp,

    /// <summary>torch.optim.AdamW (decoupled weight decay, no AMSGrad).</summary>
    [JsonStringEnumMemberName("adamw")] AdamW,
}

/// <summary>What the learning rate does after the linear warmup.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<ScheduleKind>))]
public enum ScheduleKind
{
    /// <summary>Stays at <see cref="OptimizerOptions.LearningRate"/> (the DPO reference code).</summary>
    [JsonStringEnumMemberName("constant")] Constant,

    /// <summary>Half-cosine from <see cref="OptimizerOptions.LearningRate"/> at the end of warmup to 0 at <see cref="OptimizerOptions.TotalSteps"/>.</summary>
    [JsonStringEnumMemberName("cosine")] Cosine,
}

/// <summary>
/// Optimizer and learning-rate schedule of a policy run. Defaults are the paper's recipe (docs/algorithms.md §2): RMSprop, lr 5e-7,
/// 150 warmup steps, constant afterwards, global gradient-norm clipping at 10, as in the DPO reference code.
/// </summary>
public sealed record OptimizerOptions
{
    public OptimizerKind Kind { get; init; } = OptimizerKind.RmsProp;

    /// <summary>Peak learning rate, reached at the end of warmup.</summary>
    public double LearningRate { get; init; } = 5e-7;

    /// <summary>
    /// 0 by default for both kinds (the paper uses none). For AdamW it is decoupled (<c>p ← p·(1 − lr·wd)</c>, torch's
    /// AdamW, whose own default would be 0.01); for RMSprop it is torch's L2 term added to the gradient.
    /// </summary>
    public double WeightDecay { get; init; }

    /// <summary>AdamW first-moment decay.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW second-moment decay.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Denominator epsilon of both update rules.</summary>
    public double Eps { get; init; } = 1e-8;

    /// <summary>RMSprop smoothing constant of the squared-gradient average (torch default).</summary>
    public double RmsAlpha { get; init; } = 0.99;

    /// <summary>Linear warmup length; 0 means the full rate from the first step.</summary>
    public int WarmupSteps { get; init; } = 150;

    public ScheduleKind Schedule { get; init; } = ScheduleKind.Constant;

    /// <summary>Optimizer steps of the whole run; required (greater than <see cref="WarmupSteps"/>) for the cosine schedule.</summary>
    public int TotalSteps { get; init; }

    /// <summary>Global L2 gradient-norm bound; 0 disables clipping (the norm is still measured).</summary>
    public double MaxGradNorm { get; init; } = 10.0;

    /// <summary>Throws <see cref="ArgumentException"/> naming the offending field in snake_case, as run configs spell it.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Kind))
            throw Bad("optimizer", $"is {(int)Kind}, which is neither rmsprop nor adamw");
        if (!Enum.IsDefined(Schedule))
            throw Bad("lr_scheduler_type", $"is {(int)Schedule}, which is neither constant nor cosine");
        if (!double.IsFinite(LearningRate) || LearningRate <= 0)
            throw Bad("learning_rate", $"must be a positive finite number (got {LearningRate})");
        if (!double.IsFinite(WeightDecay) || WeightDecay < 0)
            throw Bad("weight_decay", $"must be a finite number ≥ 0 (got {WeightDecay})");
        if (!double.IsFinite(Beta1) || Beta1 < 0 || Beta1 >= 1)
            throw Bad("beta1", $"must lie in [0, 1) (got {Beta1})");
        if (!double.IsFinite(Beta2) || Beta2 < 0 || Beta2 >= 1)
            throw Bad("beta2", $"must lie in [0, 1) (got {Beta2})");
        if (!double.IsFinite(Eps) || Eps <= 0)
            throw Bad("eps", $"must be a positive finite number (got {Eps})");
        if (!double.IsFinite(RmsAlpha) || RmsAlpha < 0 || RmsAlpha >= 1)
            throw Bad("rms_alpha", $"must lie in [0, 1) (got {RmsAlpha})");
        if (WarmupSteps < 0)
            throw Bad("warmup_steps", $"must be ≥ 0 (got {WarmupSteps})");
        if (TotalSteps < 0)
            throw Bad("total_steps", $"must be ≥ 0 (got {TotalSteps})");
        if (Schedule == ScheduleKind.Cosine && TotalSteps <= WarmupSteps)
            throw Bad("total_steps", $"must exceed warmup_steps ({WarmupSteps}) for the cosine schedule (got {TotalSteps})");
        if (!double.IsFinite(MaxGradNorm) || MaxGradNorm < 0)
            throw Bad("max_grad_norm", $"must be a finite number ≥ 0, 0 disabling clipping (got {MaxGradNorm})");
    }

    static ArgumentException Bad(string field, string problem) => new($"optimizer option '{field}' {problem}.", field);
}
