using System.Text.Json.Nodes;
using RefAlign.Compute.Formats;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models.Lora;

/// <summary>
/// LoRA adapters on a <see cref="CausalLm"/>: every targeted projection computes
/// <c>W·x + (alpha / r) · B·A·dropout(x)</c>. This module owns every <c>lora_A</c>/<c>lora_B</c> parameter, named as
/// PEFT names them in <c>adapter_model.safetensors</c>
/// (<c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c> [r, in], <c>…lora_B.weight</c> [out, r];
/// NeoX: <c>base_model.model.gpt_neox.layers.0.attention.query_key_value.lora_A.weight</c>).
/// The adapters reach the model only through the <see cref="AdapterSlot"/> hooks of its blocks, so the model's own
/// parameters and state_dict() are untouched and still load/save as a plain HF folder.
/// </summary>
/// <remarks>
/// Adapter weights are kept in float32 whatever the base dtype (PEFT's <c>autocast_adapter_dtype</c>); the adapter
/// input is cast to float32 and the delta back to the projection's dtype. Create the adapters after moving the model
/// to its device and dtype; moving either afterwards is the caller's business (they must match again).
/// <see cref="Disable"/> is a switch on the whole model: while any scope is open every forward of the model computes
/// the base function.
/// </remarks>
public sealed class LoraAdapters : nn.Module
{
    public const string WeightsFile = "adapter_model.safetensors";
    const string PeftPrefix = "base_model.model.";

    // Plain holders only: TorchSharp registers Module/Parameter/Tensor-valued fields of a module by reflection, and
    // the base model must not become part of this module's parameters.
    readonly ModelRef _model;
    readonly List<LoraLayer> _layers;
    readonly List<(Parameter Param, bool RequiresGrad)> _baseRequiresGrad = [];
    LoraConfig _config;
    int _disabled;
    bool _attached;

    LoraAdapters(CausalLm model, LoraConfig config) : base(nameof(LoraAdapters))
    {
        _model = new ModelRef(model);
        _config = config;
        _layers = [];
    }

    /// <summary>The configuration in force (after <see cref="LoadAdapter"/>, the loaded folder's).</summary>
    public LoraConfig Config => _config;

    /// <summary>alpha / rank.</summary>
    public double Scale => _config.Scale;

    /// <summary>True while the hooks are installed and no <see cref="Disable"/> scope is open.</summary>
    public bool Enabled => _attached && Volatile.Read(ref _disabled) == 0;

    /// <summary>Names of the adapted projections, e.g. <c>model.layers.0.self_attn.q_proj</c>.</summary>
    public IReadOnlyList<string> AdaptedModules => [.. _layers.Select(l => l.BaseName)];

    internal CausalLm Model => _model.Model;

    /// <summary>
    /// Hooks fresh adapters into every projection named by <see cref="LoraConfig.TargetModules"/> (<c>all-linear</c>: every
    /// projection of the model's architecture): A drawn like PEFT
    /// (kaiming-uniform with a = √5, i.e. U(±1/√in)) from <paramref name="seed"/>, B = 0, so the adapted model
    /// computes exactly the base function until B is trained. Every base parameter gets requires_grad = false
    /// (restored by <see cref="Detach"/>); the adapter parameters require grad.
    /// </summary>
    public static LoraAdapters Attach(CausalLm model, LoraConfig config, long seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        config = config with { TargetModules = LoraConfig.ResolveTargets(config.TargetModules, model.Config) };
        config.Validate();
        var weights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var targets = new List<(string Name, AdapterSlot Slot, Parameter Weight)>();
        foreach (var (name, module) in model.named_modules())
        {
            var slots = module switch
            {
                SelfAttention a => a.AdapterSlots,
                GatedMlp m => m.AdapterSlots,
                GptNeoXAttention a => a.AdapterSlots,
                GptNeoXMlp m => m.AdapterSlots,
                _ => null,
            };
            if (slots is null) continue;
            foreach (var target in LoraConfig.KnownTargets.Where(config.TargetModules.Contains))
            {
                if (!slots.TryGetValue(target, out var slot)) continue;
                var full = $"{name}.{target}";
                if (slot.Adapter is not null)
                    throw new InvalidOperationException($"{full} already has an adapter attached; detach it first.");
                targets.Add((full, slot, weights[$"{full}.weight"]));
            }
        }
        if (targets.Count == 0)
            throw new ArgumentException(
                $"none of the target modules ({string.Join(", ", config.TargetModules)}) exist in the model.", nameof(config));

        // As PEFT: names that match no module of this architecture are ignored as long as one matches; the adapter
        // records the ones it adapted, so its adapter_config.json lists only projections the model has.
        var found = targets.Select(t => t.Name[(t.Name.LastIndexOf('.') + 1)..]).ToHashSet(StringComparer.Ordinal);
        var adapters = new LoraAdapters(model, config with { TargetModules = [.. config.TargetModules.Where(found.Contains)] });
        try
        {
            using var gen = new Generator((ulong)seed);
            using (no_grad())
            {
                foreach (var (name, slot, w) in targets)
                {
                    using var scope = NewDisposeScope();
                    long outF = w.shape[0], inF = w.shape[1];
                    var bound = 1.0 / Math.Sqrt(inF);
                    // Drawn on the CPU so the values depend on the seed only, not on the device.
                    var a0 = empty([config.Rank, inF], ScalarType.Float32, CPU);
                    a0.uniform_(-bound, bound, gen);
                    var a = new Parameter(a0.to(w.device, copy: true), requires_grad: true);
                    a.DetachFromDisposeScope();
                    var b = new Parameter(zeros([outF, config.Rank], ScalarType.Float32, w.device), requires_grad: true);
                    b.DetachFromDisposeScope();
                    var layer = new LoraLayer(adapters, name, slot);
                    adapters.register_parameter(layer.AName, a);
                    adapters.register_parameter(layer.BName, b);
                    adapters._layers.Add(layer);
                }
            }
            foreach (var p in weights.Values)
            {
                adapters._baseRequiresGrad.Add((p, p.requires_grad));
                p.requires_grad = false;
            }
            foreach (var l in adapters._layers) l.Slot.Adapter = l;
            adapters._attached = true;
            return adapters;
        }
        catch
        {
            adapters.Dispose();
            throw;
        }
    }

    /// <summary>The lora_A/lora_B parameters, the only ones an optimizer should see.</summary>
    public IEnumerable<Parameter> TrainableParameters() => parameters();

    /// <summary>
    /// Until the returned scope is disposed the model computes its base function, which is the frozen reference of
    /// preference training: no second copy of the weights exists. Scopes nest; disposing one twice is harmless.
    /// </summary>
    public IDisposable Disable()
    {
        Interlocked.Increment(ref _disabled);
        return new EnableOnDispose(this);
    }

    /// <summary>Writes <c>adapter_model.safetensors</c> (PEFT tensor names) and <c>adapter_config.json</c>.</summary>
    public void SaveAdapter(string folder)
    {
        Directory.CreateDirectory(folder);
        var tensors = named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);
        SafeTensors.SaveFile(Path.Combine(folder, WeightsFile), tensors);
        _config.Save(folder);
    }

    /// <summary>
    /// Loads adapter weights saved by <see cref="SaveAdapter"/> or PEFT. Every name and shape is checked before
    /// anything is copied; alpha and dropout are taken from the folder's <c>adapter_config.json</c> when present.
    /// </summary>
    public void LoadAdapter(string folder)
    {
        var file = Path.Combine(folder, WeightsFile);
        if (!File.Exists(file))
            throw new ModelFormatException($"{folder}: has no {WeightsFile}.");
        var header = SafeTensors.ReadHeader(file, out _);
        var own = named_parameters().ToList();
        var ownNames = new HashSet<string>(own.Select(p => p.name), StringComparer.Ordinal);
        foreach (var (name, p) in own)
        {
            if (!header.TryGetValue(name, out var info))
                throw new ModelFormatException(
                    $"{file}: has no tensor '{name}', which this adapter (rank {_config.Rank}, targets {string.Join(", ", _config.TargetModules)}) needs (shape {Shape(p.shape)}).");
            if (!info.Shape.AsSpan().SequenceEqual(p.shape))
                throw new ModelFormatException(
                    $"{file}: tensor '{name}' has shape {Shape(info.Shape)} in the file but the adapter (rank {_config.Rank}) expects {Shape(p.shape)}.");
        }
        var extra = header.Keys.Where(n => !ownNames.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            throw new ModelFormatException(
                $"{file}: tensor '{extra[0]}' does not belong to this adapter (targets {string.Join(", ", _config.TargetModules)}){(extra.Count > 1 ? $", nor do {extra.Count - 1} more" : "")}.");
        var fileConfig = File.Exists(Path.Combine(folder, LoraConfig.FileName)) ? LoraConfig.Load(folder) : null;
        if (fileConfig is not null && fileConfig.Rank != _config.Rank)
            throw new ModelFormatException(
                $"{Path.Combine(folder, LoraConfig.FileName)}: field 'r' is {fileConfig.Rank} but the tensors in {file} have rank {_config.Rank}.");

        var loaded = SafeTensors.LoadFile(file);
        try
        {
            using var _ = no_grad();
            foreach (var (name, p) in own) p.copy_(loaded[name]);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
        if (fileConfig is not null) _config = fileConfig with { TargetModules = _config.TargetModules };
    }

    /// <summary>
    /// Writes an HF model folder (config.json, generation_config.json, weights) whose targeted weights are
    /// <c>W + scale·B·A</c>, computed in float32 and stored in the model's dtype. The in-memory model is not
    /// modified; the merged tensors exist only while they are written. Tokenizer files are the caller's business.
    /// </summary>
    public void MergeAndSave(CausalLm model, string folder, long maxShardBytes = 5L << 30)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!ReferenceEquals(model, _model.Model))
            throw new ArgumentException("these adapters are attached to a different model.", nameof(model));
        Directory.CreateDirectory(folder);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var byWeight = _layers.ToDictionary(l => $"{l.BaseName}.weight", StringComparer.Ordinal);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, w) in model.named_parameters())
        {
            if (byWeight.TryGetValue(name, out var layer))
            {
                var delta = layer.B.matmul(layer.A).mul(Scale);
                tensors[name] = w.to(ScalarType.Float32).add(delta).to(w.dtype);
            }
            else tensors[name] = w;
        }
        WriteConfigs(model, folder);
        ModelWeights.Save(folder, tensors, maxShardBytes);
    }

    /// <summary>Removes the hooks and restores every base parameter's requires_grad. Idempotent.</summary>
    public void Detach()
    {
        if (!_attached) return;
        foreach (var l in _layers)
            if (ReferenceEquals(l.Slot.Adapter, l)) l.Slot.Adapter = null;
        foreach (var (p, rg) in _baseRequiresGrad) p.requires_grad = rg;
        _baseRequiresGrad.Clear();
        _attached = false;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) Detach();
        base.Dispose(disposing);
    }

    // The same files CausalLm.SavePretrained writes besides the weights (kept in step with it).
    static void WriteConfigs(CausalLm model, string folder)
    {
        var c = model.Config;
        (c with { TorchDtype = DTypeName(model.DType) }).Save(folder);
        var gen = new JsonObject { ["_from_model_config"] = true };
        if (c.BosTokenId is int b) gen["bos_token_id"] = b;
        if (c.EosTokenIds.Count == 1) gen["eos_token_id"] = c.EosTokenIds[0];
        else if (c.EosTokenIds.Count > 1) gen["eos_token_id"] = new JsonArray([.. c.EosTokenIds.Select(e => (JsonNode)e)]);
        if (c.PadTokenId is int p) gen["pad_token_id"] = p;
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), gen.ToJsonString(new() { WriteIndented = true }));
    }

    static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

    static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";

    Parameter Param(string name) =>
        get_parameter(name) ?? throw new InvalidOperationException($"LoRA parameter '{name}' is no longer registered.");

    sealed class ModelRef(CausalLm model)
    {
        public CausalLm Model { get; } = model;
    }

    sealed class EnableOnDispose(LoraAdapters owner) : IDisposable
    {
        int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) Interlocked.Decrement(ref owner._disabled);
        }
    }

    /// <summary>One adapted projection; parameters are looked up by name so a moved module stays consistent.</summary>
    sealed class LoraLayer(LoraAdapters owner, string baseName, AdapterSlot slot) : IProjectionAdapter
    {
        public string BaseName { get; } = baseName;
        public AdapterSlot Slot { get; } = slot;
        public string AName { get; } = $"{PeftPrefix}{baseName}.lora_A.weight";
        public string BName { get; } = $"{PeftPrefix}{baseName}.lora_B.weight";
        public Parameter A => owner.Param(AName);
        public Parameter B => owner.Param(BName);

        public bool Active => owner.Enabled;

        public Tensor Delta(Tensor x)
        {
            using var scope = NewDisposeScope();
            var a = A;
            var h = x.dtype == a.dtype ? x : x.to(a.dtype);
            var p = owner._config.Dropout;
            // As PEFT: dropout on the adapter input, only while the model is in training mode.
            if (p > 0 && owner.Model.training) h = nn.functional.dropout(h, p, training: true);
            var d = nn.functional.linear(nn.functional.linear(h, a), B).mul(owner.Scale);
            if (d.dtype != x.dtype) d = d.to(x.dtype);
            return d.MoveToOuterDisposeScope();
        }
    }
}
