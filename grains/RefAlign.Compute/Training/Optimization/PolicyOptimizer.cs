using System.Globalization;
using RefAlign.Compute.Formats;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training.Optimization;

/// <summary>
/// A TorchSharp RMSprop or AdamW over the given parameters, with the run's learning-rate schedule, global gradient
/// clipping, and exact save/load of the optimizer state through safetensors. One <see cref="ClipAndStep"/> per
/// optimizer step; gradients are accumulated by the caller (see <see cref="MicroBatches"/>) before it.
/// Half-precision parameters (bfloat16, float16) get float32 master weights: the optimizer state and the update live
/// in float32 and the model gets the rounded result, so a small update (lr 5e-7) accumulates instead of rounding away
/// (docs/algorithms.md §5).
/// </summary>
public sealed class PolicyOptimizer : IDisposable
{
    const string FormatKey = "refalign_optimizer_state";
    const string FormatValue = "1";
    const string KindKey = "optimizer";
    const string StepKey = "step";
    const string CountKey = "parameter_count";

    readonly OptimizerOptions _options;
    readonly List<Parameter> _parameters;
    readonly List<string> _names;
    readonly OptimizerHelper _optimizer;
    // Float32 copies of half-precision parameters, what the optimizer steps; null when the parameters are float32.
    readonly List<Parameter>? _masters;
    bool _disposed;

    /// <summary>Parameters are named <c>param_00000</c>, <c>param_00001</c>, … in the state file, in the given order.</summary>
    public PolicyOptimizer(IEnumerable<Parameter> parameters, OptimizerOptions options)
        : this(Named(parameters), options)
    {
    }

    /// <summary>
    /// Named parameters (e.g. <c>module.named_parameters()</c>): the state file then keys each state tensor by the
    /// parameter name (<c>model.layers.0.mlp.up_proj.weight.exp_avg</c>), so a mismatch names the parameter.
    /// </summary>
    public PolicyOptimizer(IEnumerable<(string Name, Parameter Parameter)> parameters, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        var list = parameters.ToList();
        if (list.Count == 0)
            throw new ArgumentException("the optimizer needs at least one parameter.", nameof(parameters));
        var handles = new HashSet<IntPtr>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, p) in list)
        {
            if (!handles.Add(p.Handle))
                throw new ArgumentException($"parameter '{name}' is given twice.", nameof(parameters));
            if (!names.Add(name))
                throw new ArgumentException($"two parameters are named '{name}'.", nameof(parameters));
        }
        _parameters = [.. list.Select(e => e.Parameter)];
        _names = [.. list.Select(e => e.Name)];
        if (_parameters.Any(p => p.dtype is ScalarType.BFloat16 or ScalarType.Float16))
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            // Owned by this optimizer for its lifetime, whatever dispose scope the caller is in.
            _masters = [.. _parameters.Select(p => new Parameter(p.detach().to(ScalarType.Float32).clone()).DetachFromDisposeScope() as Parameter
                ?? throw new InvalidOperationException("a master weight is not a parameter."))];
        }
        var stepped = _masters ?? _parameters;
        // The initial lr is replaced before every step by the schedule.
        _optimizer = options.Kind switch
        {
            OptimizerKind.AdamW => optim.AdamW(stepped, options.LearningRate, options.Beta1, options.Beta2,
                options.Eps, options.WeightDecay),
            _ => optim.RMSProp(stepped, options.LearningRate, options.RmsAlpha, options.Eps, options.WeightDecay),
        };
    }

    public OptimizerOptions Options => _options;

    /// <summary>Whether the optimizer keeps float32 master weights (the parameters are half precision).</summary>
    public bool HasMasterWeights => _masters is not null;

    /// <summary>The float32 master copy of parameter <paramref name="index"/> (null without master weights).</summary>
    public Tensor? MasterOf(int index) => _masters?[index];

    /// <summary>Optimizer steps taken (restored by <see cref="LoadState"/>).</summary>
    public int Step { get; private set; }

    /// <summary>
    /// The learning rate of optimizer step <paramref name="step"/> (0-based). Warmup is the DPO reference code's
    /// <c>LambdaLR(lambda s: min(1, (s + 1) / (warmup_steps + 1)))</c>, so step 0 already trains at
    /// lr / (warmup + 1) and step <c>warmup</c> reaches lr. Constant: lr from then on. Cosine
    /// (transformers' <c>get_cosine_schedule_with_warmup</c> after warmup): lr·½(1 + cos(π·p)) with
    /// p = (step − warmup) / (total_steps − warmup), clamped to [0, 1], so it is 0 at and after total_steps.
    /// </summary>
    public double LearningRateAt(int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        var warmup = _options.WarmupSteps;
        if (step < warmup)
            return _options.LearningRate * Math.Min(1.0, (step + 1.0) / (warmup + 1.0));
        if (_options.Schedule == ScheduleKind.Constant)
            return _options.LearningRate;
        var progress = Math.Clamp((step - warmup) / (double)(_options.TotalSteps - warmup), 0.0, 1.0);
        return Math.Max(0.0, _options.LearningRate * 0.5 * (1.0 + Math.Cos(Math.PI * progress)));
    }

    /// <summary>
    /// Global L2 norm over all present gradients before clipping; when <see cref="OptimizerOptions.MaxGradNorm"/> is
    /// positive the gradients are scaled in place by torch's <c>clip_grad_norm_</c> (factor max/(norm + 1e-6) when
    /// above the bound).
    /// </summary>
    public double ClipGradients()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var _ = no_grad();
        if (_masters is not null) GradientsToMasters();
        var stepped = _masters ?? _parameters;
        if (_options.MaxGradNorm > 0)
            return nn.utils.clip_grad_norm_(stepped, _options.MaxGradNorm);
        using var scope = NewDisposeScope();
        var norms = new List<Tensor>(stepped.Count);
        foreach (var p in stepped)
        {
            var g = p.grad;
            if (g is not null)
                norms.Add(linalg.vector_norm(g.detach(), 2).to(ScalarType.Float64));
        }
        return norms.Count == 0 ? 0.0 : linalg.vector_norm(stack(norms), 2).item<double>();
    }

    /// <summary>
    /// One optimizer step: clips (returns the pre-clip global gradient norm), sets the scheduled lr of this step,
    /// applies the update, zeroes the gradients and advances <see cref="Step"/>. A non-finite gradient norm is never
    /// applied: the gradients are dropped and <see cref="NonFiniteStepException"/> names the step. An update that leaves a
    /// weight non-finite (a learning rate beyond what float32 holds) throws it too; the weights are then lost and the run
    /// must go back to a checkpoint.
    /// </summary>
    public double ClipAndStep()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var norm = ClipGradients();
        if (!double.IsFinite(norm))
        {
            DropGradients();
            throw new NonFiniteStepException(Step, "grad_norm", norm, "the gradients were dropped and nothing was applied");
        }
        var lr = LearningRateAt(Step);
        foreach (var group in _optimizer.ParamGroups)
            group.LearningRate = lr;
        _optimizer.step()?.Dispose();
        _optimizer.zero_grad();
        if (_masters is not null)
        {
            ZeroParameterGradients();
            MastersToParameters();
        }
        if (!AllFinite(_masters ?? _parameters))
            throw new NonFiniteStepException(Step, "weights", double.NaN,
                string.Create(CultureInfo.InvariantCulture, $"the update at learning rate {lr} left weights non-finite; resume from a checkpoint with a smaller optimizer.learning_rate"));
        Step++;
        return norm;
    }

    /// <summary>Forgets the accumulated gradients of a step that is not taken.</summary>
    public void DropGradients()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _optimizer.zero_grad();
        if (_masters is not null) ZeroParameterGradients();
    }

    static bool AllFinite(IEnumerable<Parameter> parameters)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        return parameters.All(p => p.isfinite().all().item<bool>());
    }

    // The half-precision gradients, widened: clipping and the update see float32. Idempotent until the step.
    void GradientsToMasters()
    {
        using var _ = no_grad();
        for (var i = 0; i < _parameters.Count; i++)
        {
            using var g = _parameters[i].grad;
            if (g is null) continue;
            if (_masters![i].grad is { } mg) { mg.copy_(g); mg.Dispose(); }
            else
            {
                using var wide = g.to(ScalarType.Float32);
                _masters[i].grad = wide; // the parameter holds its own reference
            }
        }
    }

    void ZeroParameterGradients()
    {
        using var _ = no_grad();
        foreach (var p in _parameters)
        {
            using var g = p.grad;
            g?.zero_();
        }
    }

    /// <summary>The model's parameters become the master weights, rounded to their dtype.</summary>
    void MastersToParameters()
    {
        using var _ = no_grad();
        for (var i = 0; i < _parameters.Count; i++)
            _parameters[i].copy_(_masters![i]);
    }

    /// <summary>
    /// Writes every state tensor in use (RMSprop: <c>square_avg</c>; AdamW: <c>exp_avg</c>, <c>exp_avg_sq</c>) in its own
    /// dtype, each parameter's step counter as a scalar I64 <c>step</c> tensor, and in the metadata the optimizer kind,
    /// <see cref="Step"/> and the parameter count. The file is written atomically.
    /// </summary>
    public void SaveState(string file)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var states = States();
        for (var i = 0; i < states.Count; i++)
        {
            var (step, buffers) = Read(states[i]);
            tensors[$"{_names[i]}.step"] = tensor(step, device: CPU); // host-side, for the file
            foreach (var (suffix, t) in buffers.Concat(Master(i)))
                tensors[$"{_names[i]}.{suffix}"] = t;
        }
        var meta = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [FormatKey] = FormatValue,
            [KindKey] = KindName(_options.Kind),
            [StepKey] = Step.ToString(CultureInfo.InvariantCulture),
            [CountKey] = _parameters.Count.ToString(CultureInfo.InvariantCulture),
        };
        SafeTensors.SaveFile(file, tensors, meta);
    }

    /// <summary>
    /// Restores a state written by <see cref="SaveState"/> for the same optimizer kind and parameter set. Everything is
    /// checked (kind, names, shapes, step tensors) before anything is changed; a mismatch throws
    /// <see cref="ModelFormatException"/> naming the file and the tensor. Values of another floating dtype are converted.
    /// </summary>
    public void LoadState(string file)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var infos = SafeTensors.ReadHeader(file, out var meta);
        if (!meta.TryGetValue(FormatKey, out var format) || format != FormatValue)
            throw new ModelFormatException($"{file}: is not an optimizer state file (metadata '{FormatKey}' is not '{FormatValue}').");
        var kind = meta.GetValueOrDefault(KindKey);
        if (kind != KindName(_options.Kind))
            throw new ModelFormatException($"{file}: holds '{kind}' optimizer state but this optimizer is '{KindName(_options.Kind)}'.");
        if (!meta.TryGetValue(StepKey, out var stepText)
            || !int.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out var savedStep))
            throw new ModelFormatException($"{file}: metadata '{StepKey}' is missing or not a step count.");

        var states = States();
        var expected = new Dictionary<string, long[]>(StringComparer.Ordinal);
        for (var i = 0; i < states.Count; i++)
        {
            expected[$"{_names[i]}.step"] = [];
            foreach (var (suffix, t) in Read(states[i]).Buffers.Concat(Master(i)))
                expected[$"{_names[i]}.{suffix}"] = t.shape;
        }
        foreach (var (name, shape) in expected)
        {
            if (!infos.TryGetValue(name, out var info) && name.EndsWith(".master", StringComparison.Ordinal) && !infos.Keys.Any(k => k.EndsWith(".master", StringComparison.Ordinal)))
                continue; // a state saved before master weights existed: they start from the restored parameters
            if (info is null)
                throw new ModelFormatException(
                    $"{file}: has no tensor '{name}', which this optimizer needs (shape {Shape(shape)}; different parameters or names?).");
            if (!info.Shape.AsSpan().SequenceEqual(shape))
                throw new ModelFormatException(
                    $"{file}: tensor '{name}' has shape {Shape(info.Shape)} but this optimizer's parameter needs {Shape(shape)}.");
            if (name.EndsWith(".step", StringComparison.Ordinal) && shape.Length == 0 && info.DType != "I64")
                throw new ModelFormatException($"{file}: step counter '{name}' is {info.DType}, not I64.");
        }
        var extra = infos.Keys.Where(n => !expected.ContainsKey(n)).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            throw new ModelFormatException(
                $"{file}: tensor '{extra[0]}' belongs to no parameter of this optimizer ({extra.Count} such; different parameter set?).");

        var loaded = SafeTensors.LoadFile(file);
        try
        {
            using var _ = no_grad();
            for (var i = 0; i < states.Count; i++)
            {
                var step = loaded[$"{_names[i]}.step"].item<long>();
                foreach (var (suffix, t) in Read(states[i]).Buffers)
                    t.copy_(loaded[$"{_names[i]}.{suffix}"]);
                if (_masters is not null) _masters[i].copy_(loaded.TryGetValue($"{_names[i]}.master", out var m) ? m : _parameters[i]);
                SetStep(states[i], step);
            }
            if (_masters is not null) MastersToParameters();
        }
        finally
        {
            foreach (var t in loaded.Values)
                t.Dispose();
        }
        Step = savedStep;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _optimizer.Dispose();
        foreach (var m in _masters ?? []) m.Dispose();
    }

    // A parameter's float32 master weights travel with its optimizer state (suffix "master").
    IEnumerable<(string Suffix, Tensor Tensor)> Master(int i) => _masters is null ? [] : [("master", _masters[i])];

    List<OptimizerState> States()
    {
        var states = _optimizer.state_dict().State;
        if (states.Count != _parameters.Count)
            throw new InvalidOperationException($"TorchSharp reports {states.Count} optimizer states for {_parameters.Count} parameters.");
        return states;
    }

    // The state tensors in use: RMSprop's momentum buffer and centered average exist in TorchSharp but stay zero with
    // momentum 0 and centered false, which this wrapper always uses; AdamW's max_exp_avg_sq exists only with AMSGrad.
    static (long Step, List<(string Suffix, Tensor Tensor)> Buffers) Read(OptimizerState state) => state switch
    {
        RMSProp.State r => (r.step, [("square_avg", r.square_avg)]),
        AdamW.State a => (a.step, [("exp_avg", a.exp_avg), ("exp_avg_sq", a.exp_avg_sq)]),
        _ => throw new InvalidOperationException($"unexpected optimizer state type {state.GetType().FullName}."),
    };

    static void SetStep(OptimizerState state, long step)
    {
        switch (state)
        {
            case RMSProp.State r: r.step = step; break;
            case AdamW.State a: a.step = step; break;
            default: throw new InvalidOperationException($"unexpected optimizer state type {state.GetType().FullName}.");
        }
    }

    static IEnumerable<(string, Parameter)> Named(IEnumerable<Parameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return parameters.Select((p, i) => (string.Create(CultureInfo.InvariantCulture, $"param_{i:D5}"), p));
    }

    static string KindName(OptimizerKind k) => k == OptimizerKind.AdamW ? "adamw" : "rmsprop";

    static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";
}
