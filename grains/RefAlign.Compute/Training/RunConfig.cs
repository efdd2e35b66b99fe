using System.Text.Json;
using System.Text.Json.Serialization;
using RefAlign.Compute.Data;
using RefAlign.Compute.Models;
using RefAlign.Compute.Scoring;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training.Optimization;

namespace RefAlign.Compute.Training;

/// <summary>
/// One run, as JSON (snake_case). The same document drives <c>refalign train</c>, the gRPC <c>StartRun</c> call and the
/// grains, so a run behaves the same wherever it is launched. Unknown fields are rejected, so a typo never passes
/// silently; <see cref="Validate"/> names the first invalid field by its JSON path.
/// </summary>
public sealed record RunConfig
{
    public string Name { get; init; } = "run";
    public Algorithm Algorithm { get; init; } = Algorithm.RefAlign;
    public long Seed { get; init; }
    public PolicySection Policy { get; init; } = new();
    public DataSection Data { get; init; } = new();
    public OptimizerSection Optimizer { get; init; } = new();

    /// <summary>Prompts (RefAlign) or pairs (preference losses) per optimizer step.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Rows per forward/backward; gradients accumulate up to <see cref="BatchSize"/>.</summary>
    public int MicroBatchSize { get; init; } = 8;

    public int Epochs { get; init; } = 1;
    public int? MaxSteps { get; init; }
    public int EvalEvery { get; init; } = 50;
    public int EvalExamples { get; init; } = 64;
    public int CheckpointEvery { get; init; } = 100;

    /// <summary>Also checkpoint once this many seconds passed since the last one (0 = only by steps), bounding the replay after a learner loss.</summary>
    public int CheckpointEverySeconds { get; init; }
    public int KeepCheckpoints { get; init; } = 3;
    public string OutputDir { get; init; } = "runs/run";
    public PreferenceSection Preference { get; init; } = new();
    /// <summary>Sampling and rewards of every run that samples: RefAlign and the GRPO family.</summary>
    [JsonPropertyName("refalign")] public RefAlignSection RefAlign { get; init; } = new();

    /// <summary>The GRPO family's objective: clip ε, KL to the reference, averaging.</summary>
    public PolicyGradientSection PolicyGradient { get; init; } = new();
    public DistributedSection Distributed { get; init; } = new();

    [JsonIgnore] public bool IsPreference => Algorithm is Algorithm.Dpo or Algorithm.CDpo or Algorithm.Ipo or Algorithm.SrDpo or Algorithm.SrIpo;
    [JsonIgnore] public bool IsSft => Algorithm == Algorithm.Sft;
    [JsonIgnore] public bool IsSelfRefined => Algorithm is Algorithm.SrDpo or Algorithm.SrIpo;

    /// <summary>GRPO, RLOO and REINFORCE++: the clipped objective of docs/algorithms.md §7.</summary>
    [JsonIgnore] public bool IsGrpoFamily => Algorithm is Algorithm.Grpo or Algorithm.Rloo or Algorithm.ReinforcePp;

    /// <summary>Runs that sample K responses per prompt and score them (RefAlign and the GRPO family).</summary>
    [JsonIgnore] public bool IsRollout => Algorithm == Algorithm.RefAlign || IsGrpoFamily;

    /// <summary>Pipelined runs learn from samples up to max_staleness versions old: the learner corrects with truncated importance weights (§8).</summary>
    [JsonIgnore] public bool CorrectsOffPolicy => IsRollout && Distributed.Mode == DistributedMode.Pipelined && Distributed.MaxStaleness >= 1;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        AllowTrailingCommas = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Parses a JSON document; syntax errors and unknown or mistyped fields name the JSON path.</summary>
    public static RunConfig Parse(string json, string source = "run config")
    {
        try
        {
            return JsonSerializer.Deserialize<RunConfig>(json, Json)
                   ?? throw new InvalidRunConfigException("$", $"{source}: the document is empty (null).");
        }
        catch (JsonException e)
        {
            var field = (e.Path ?? "$").TrimStart('$', '.');
            if (field.Length == 0) field = "$";
            var detail = e.Message.Split(" Path:")[0];
            // A closed set of values (SnakeCaseEnumConverter) says what is allowed; other errors are wrapped as they come.
            var what = detail.StartsWith("must be one of", StringComparison.Ordinal) ? detail
                : e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? $"is not a known field ({detail})"
                : $"is invalid ({detail})";
            throw new InvalidRunConfigException(field, $"{source}: field '{field}' {what}", e);
        }
    }

    public static RunConfig Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidRunConfigException("$", $"{path}: run config file not found.");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>
    /// <see cref="Load"/> for a run on this machine: models named as earlier stages' outputs (a checkpoint, a run folder,
    /// <c>run:&lt;folder&gt;</c>; see <see cref="ModelReferences"/>) resolved to the HF folders they stand for.
    /// </summary>
    public static RunConfig LoadLocal(string path) =>
        ModelReferences.Resolve(ArtifactReferences.RefuseLocally(Load(path)), ModelReferences.LocalRunCheckpoint);

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>
    /// This config with every relative path (models, data, encoder, output) made absolute under <paramref name="root"/>,
    /// so a run never depends on the working directory of whichever process reads it next.
    /// </summary>
    public RunConfig WithPathsUnder(string root)
    {
        string Abs(string p) => p.Length == 0 || System.IO.Path.IsPathRooted(p) ? p : System.IO.Path.GetFullPath(System.IO.Path.Combine(root, p));
        return this with
        {
            Policy = Policy with { Model = Abs(Policy.Model), ReferenceModel = Policy.ReferenceModel is { } r ? Abs(r) : null },
            Data = Data with { Path = Abs(Data.Path) },
            RefAlign = RefAlign with
            {
                RewardModel = Abs(RefAlign.RewardModel),
                Rewards = RefAlign.Rewards?.Select(r => r with { Model = r.Model is { } m ? Abs(m) : null, CaCertificate = r.CaCertificate is { } c ? Abs(c) : null }).ToList(),
            },
            OutputDir = Abs(OutputDir),
        };
    }

    /// <summary>Throws <see cref="InvalidRunConfigException"/> naming the first invalid field; returns this config.</summary>
    public RunConfig Validate(bool requirePaths = true) => RunConfigValidator.Validate(this, requirePaths);
}

public sealed record PolicySection
{
    /// <summary>HF model folder of the policy (and, unless <see cref="ReferenceModel"/> is set, of the reference).</summary>
    public string Model { get; init; } = "";
    public string? ReferenceModel { get; init; }
    public ModelDType Dtype { get; init; } = ModelDType.Float32;
    /// <summary>auto (the default): the model folder's own chat template when it has one, else none.</summary>
    public ChatTemplate ChatTemplate { get; init; } = ChatTemplate.Auto;
    public LoraSection? Lora { get; init; }
}

public sealed record LoraSection
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; }
    /// <summary>Projection names (Llama family: q_proj … down_proj; NeoX: query_key_value, dense, dense_h_to_4h,
    /// dense_4h_to_h), or PEFT's <c>all-linear</c>: every projection of the policy's architecture.</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = [Models.Lora.LoraConfig.AllLinear];
}

public sealed record DataSection
{
    public string Path { get; init; } = "";
    public DataLayout Layout { get; init; } = DataLayout.Auto;
    public double EvalFraction { get; init; } = 0.1;
    public int MaxLength { get; init; } = 512;
    public int MaxPromptLength { get; init; } = 256;
    public bool SkipMalformed { get; init; }
    public int? Limit { get; init; }
    public PkuPreference PkuPreference { get; init; } = PkuPreference.Better;
    public bool Shuffle { get; init; } = true;

    /// <summary>SFT: lay short examples end to end in rows of up to <see cref="MaxLength"/> tokens (attention stays inside each).</summary>
    public bool Packing { get; init; }
}

public sealed record OptimizerSection
{
    public OptimizerKind Kind { get; init; } = OptimizerKind.RmsProp;
    public double LearningRate { get; init; } = 5e-7;
    public double WeightDecay { get; init; }
    public int WarmupSteps { get; init; } = 150;
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Constant;
    public double MaxGradNorm { get; init; } = 10.0;
}

public sealed record PreferenceSection
{
    public double Beta { get; init; } = 0.1;
    public double LabelSmoothing { get; init; }
    public double Lambda { get; init; } = 0.5;
    public string? RefinementPrompt { get; init; }
    /// <summary>Sum (DPO reference code) or mean over completion tokens (TRL's IPO).</summary>
    public LogProbReduction LogpReduction { get; init; } = LogProbReduction.Sum;
    /// <summary>Where a cluster runs Sr-*'s prompted no-grad pass; the loss is the same either way.</summary>
    public RefinementPass RefinementPass { get; init; } = RefinementPass.Auto;
}

/// <summary>Where Sr-*'s prompted pass (Δ) runs on a cluster.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<RefinementPass>))]
public enum RefinementPass
{
    /// <summary>On a policy replica of a generator silo other than the learner's, concurrently with the learner's step; else on the learner.</summary>
    [JsonStringEnumMemberName("auto")] Auto,

    /// <summary>Always on the learner, after its plain pass (the prompt shared by both completions).</summary>
    [JsonStringEnumMemberName("learner")] Learner,
}

public sealed record RefAlignSection
{
    /// <summary>HF encoder folder for BERTScore.</summary>
    public string RewardModel { get; init; } = "";
    public int? BertscoreLayers { get; init; }
    public bool Idf { get; init; }
    public int NumSamples { get; init; } = 2;
    public int MaxNewTokens { get; init; } = 64;
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public int TopK { get; init; }
    public double LengthConstant { get; init; }
    /// <summary>ε of the advantage clip; null = no clipping.</summary>
    public double? AdvantageClip { get; init; }
    public double HarmfulWeight { get; init; } = 1.0;
    public double CalibrationAlpha { get; init; }
    /// <summary>Responses end with "### Confidence: x" (CONQORD); the answer is scored without that tail.</summary>
    public bool Confidence { get; init; }

    /// <summary>The rewards and their weights (docs/algorithms.md §9); null: BERTScore alone, with <see cref="RewardModel"/>.</summary>
    public IReadOnlyList<Rewards.RewardSpec>? Rewards { get; init; }

    /// <summary><see cref="Rewards"/>, or BERTScore alone when none are named.</summary>
    [JsonIgnore] public IReadOnlyList<Rewards.RewardSpec> EffectiveRewards => Rewards ?? [new Rewards.RewardSpec()];

    [JsonIgnore] public bool UsesBertScore => EffectiveRewards.Any(r => r.Kind == Compute.Rewards.RewardKind.BertScore);
}

/// <summary>The GRPO family's objective (docs/algorithms.md §7).</summary>
public sealed record PolicyGradientSection
{
    /// <summary>ε of the clipped importance ratio.</summary>
    public double ClipEpsilon { get; init; } = 0.2;

    /// <summary>β of the k3 KL to the reference (policy.reference_model, else the starting policy); 0 = no reference pass.</summary>
    public double KlCoef { get; init; }

    public Losses.LossAveraging LossAveraging { get; init; } = Losses.LossAveraging.Token;
}

public sealed record DistributedSection
{
    public DistributedMode Mode { get; init; } = DistributedMode.Sync;
    public int MaxStaleness { get; init; } = 1;

    /// <summary>Pipelined runs: the cap of the truncated importance weight π/μ on every policy-gradient term (docs/algorithms.md §8).</summary>
    public double ImportanceCap { get; init; } = 1.0;
    /// <summary>Rollout generator shards per step (RefAlign) or reference scorer shards (preference losses).</summary>
    public int Shards { get; init; } = 2;

    /// <summary>Consecutive failed attempts without a finished step before the run is failed (each restart backs off).</summary>
    public int MaxRestarts { get; init; } = 5;

    /// <summary>
    /// An attempt in which no step finishes for this long is abandoned and restarted (a grain call lost in the cluster
    /// would otherwise hold the run until its response timeout); 0 = never. Like torch.distributed's 30-minute default.
    /// </summary>
    public double StallTimeoutSeconds { get; init; } = 1800;
}

/// <summary>How a cluster run overlaps its phases.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<DistributedMode>))]
public enum DistributedMode
{
    /// <summary>Strictly on-policy: step t samples with the weights of step t.</summary>
    [JsonStringEnumMemberName("sync")] Sync,

    /// <summary>Generation of step t+1 overlaps learning of step t (at most <c>max_staleness</c> versions behind).</summary>
    [JsonStringEnumMemberName("pipelined")] Pipelined,
}

/// <summary>An invalid run config; <see cref="Field"/> is the JSON path of the offending field.</summary>
public sealed class InvalidRunConfigException(string field, string message, Exception? inner = null) : Exception(message, inner)
{
    public string Field { get; } = field;
}
