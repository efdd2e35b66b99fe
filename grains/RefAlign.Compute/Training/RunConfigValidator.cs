using RefAlign.Compute.Data;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Compute.Training;

/// <summary>Field-by-field checks of a <see cref="RunConfig"/>; each failure names the JSON path.</summary>
internal static class RunConfigValidator
{
    public static RunConfig Validate(RunConfig c, bool requirePaths)
    {
        CheckNumbers(c, "");
        Check(!string.IsNullOrWhiteSpace(c.Name) && c.Name.All(ch => char.IsLetterOrDigit(ch) || ch is '-' or '_' or '.'),
            "name", "must be non-empty and use only letters, digits, '-', '_' and '.'");
        Check(Enum.IsDefined(c.Algorithm), "algorithm", $"must be one of {string.Join(", ", SnakeCaseEnumConverter<Algorithm>.Names)}");
        Check(c.BatchSize >= 1, "batch_size", "must be ≥ 1");
        Check(c.MicroBatchSize >= 1, "micro_batch_size", "must be ≥ 1");
        Check(c.Epochs >= 1, "epochs", "must be ≥ 1");
        Check(c.MaxSteps is null or >= 1, "max_steps", "must be ≥ 1 when set");
        Check(c.EvalEvery >= 0, "eval_every", "must be ≥ 0 (0 = never)");
        Check(c.EvalExamples >= 1, "eval_examples", "must be ≥ 1");
        Check(c.CheckpointEvery >= 0, "checkpoint_every", "must be ≥ 0 (0 = only at the end)");
        Check(c.CheckpointEverySeconds >= 0, "checkpoint_every_seconds", "must be ≥ 0 (0 = by steps only)");
        Check(c.KeepCheckpoints >= 1, "keep_checkpoints", "must be ≥ 1");
        Check(!string.IsNullOrWhiteSpace(c.OutputDir), "output_dir", "must be set");

        var p = c.Policy;
        if (requirePaths)
        {
            Check(!string.IsNullOrWhiteSpace(p.Model), "policy.model", "must name an HF model folder");
            Check(Directory.Exists(p.Model), "policy.model", $"folder '{p.Model}' does not exist");
            Check(File.Exists(Path.Combine(p.Model, "config.json")), "policy.model", $"'{p.Model}' has no config.json");
            if (p.ReferenceModel is not null)
                Check(Directory.Exists(p.ReferenceModel), "policy.reference_model", $"folder '{p.ReferenceModel}' does not exist");
        }
        Check(Enum.IsDefined(p.Dtype), "policy.dtype", "must be float32, bfloat16 or float16");
        Check(Enum.IsDefined(p.ChatTemplate), "policy.chat_template", $"must be one of {string.Join(", ", ChatTemplates.Names)}");
        if (requirePaths && p.ChatTemplate == ChatTemplate.Auto)
        {
            // Refused here, before any weights load, rather than when the data is tokenized.
            try { ChatTemplates.FromModel(p.Model); }
            catch (ModelFormatException e) { throw new InvalidRunConfigException("policy.chat_template", e.Message, e); }
        }
        if (p.Lora is { } l)
        {
            Check(l.Rank >= 1, "policy.lora.rank", "must be ≥ 1");
            Check(l.Alpha > 0 && double.IsFinite(l.Alpha), "policy.lora.alpha", "must be > 0");
            Check(l.Dropout >= 0 && l.Dropout < 1, "policy.lora.dropout", "must be in [0, 1)");
            string[] known = [.. LoraConfig.KnownTargets, LoraConfig.AllLinear];
            Check(l.TargetModules.Count > 0 && l.TargetModules.Count <= known.Length && l.TargetModules.All(known.Contains), "policy.lora.target_modules",
                $"must list at most {known.Length} projections among {string.Join(", ", known)}");
        }

        var d = c.Data;
        if (requirePaths)
        {
            Check(!string.IsNullOrWhiteSpace(d.Path), "data.path", "must name a JSONL or Parquet file");
            Check(File.Exists(d.Path), "data.path", $"file '{d.Path}' does not exist");
        }
        DataLayout[] layouts = c.IsSft ? Enum.GetValues<DataLayout>()
            : c.IsPreference ? [DataLayout.Auto, DataLayout.Plain, DataLayout.HhRlhf, DataLayout.UltraFeedback, DataLayout.PkuSafeRlhf]
            : [DataLayout.Auto, DataLayout.Plain, DataLayout.Conqord, DataLayout.PkuSafeRlhf];
        Check(layouts.Contains(d.Layout), "data.layout",
            $"must be one of {string.Join(", ", layouts.Select(SnakeCaseEnumConverter<DataLayout>.NameOf))} for {SnakeCaseEnumConverter<Algorithm>.NameOf(c.Algorithm)}");
        Check(d.EvalFraction >= 0 && d.EvalFraction < 1, "data.eval_fraction", "must be in [0, 1)");
        Check(d.MaxPromptLength >= 1, "data.max_prompt_length", "must be ≥ 1");
        Check(d.MaxLength > d.MaxPromptLength, "data.max_length", "must exceed data.max_prompt_length");
        Check(d.Limit is null or >= 1, "data.limit", "must be ≥ 1 when set");
        Check(Enum.IsDefined(d.PkuPreference), "data.pku_preference", "must be better or safer");
        Check(!d.Packing || c.IsSft, "data.packing", "is only used by sft");

        var o = c.Optimizer;
        Check(Enum.IsDefined(o.Kind), "optimizer.kind", "must be rmsprop or adamw");
        Check(o.LearningRate > 0 && double.IsFinite(o.LearningRate), "optimizer.learning_rate", "must be > 0");
        Check(o.WeightDecay >= 0 && double.IsFinite(o.WeightDecay), "optimizer.weight_decay", "must be ≥ 0");
        Check(o.WarmupSteps >= 0, "optimizer.warmup_steps", "must be ≥ 0");
        Check(Enum.IsDefined(o.Schedule), "optimizer.schedule", "must be constant or cosine");
        Check(o.MaxGradNorm >= 0 && double.IsFinite(o.MaxGradNorm), "optimizer.max_grad_norm", "must be ≥ 0 (0 = no clipping)");

        if (c.IsPreference)
        {
            var pr = c.Preference;
            Check(pr.Beta > 0 && double.IsFinite(pr.Beta), "preference.beta", "must be > 0");
            Check(pr.LabelSmoothing >= 0 && pr.LabelSmoothing < 0.5, "preference.label_smoothing", "must be in [0, 0.5)");
            Check(pr.LabelSmoothing == 0 || c.Algorithm == Algorithm.CDpo, "preference.label_smoothing", "is only used by cdpo");
            Check(pr.Lambda >= 0 && double.IsFinite(pr.Lambda), "preference.lambda", "must be ≥ 0");
            Check(pr.RefinementPrompt is null || pr.RefinementPrompt.Trim().Length > 0, "preference.refinement_prompt", "must not be blank");
            Check(Enum.IsDefined(pr.LogpReduction), "preference.logp_reduction", "must be sum or mean");
            Check(Enum.IsDefined(pr.RefinementPass), "preference.refinement_pass", "must be auto or learner");
        }
        else if (c.IsRollout)
        {
            var r = c.RefAlign;
            RewardSpecValidator.Validate(r, requirePaths);
            if (requirePaths && r.UsesBertScore)
            {
                Check(!string.IsNullOrWhiteSpace(r.RewardModel), "refalign.reward_model", "must name an HF encoder folder (BERTScore)");
                Check(Directory.Exists(r.RewardModel), "refalign.reward_model", $"folder '{r.RewardModel}' does not exist");
            }
            if (requirePaths && r.EffectiveRewards.Any(x => x.Kind == RewardKind.Rule))
            {
                // Refused at start, naming the line, rather than when the run's first attempt loads the data.
                try { TrainingData.RequireAnswers(c, ReferenceDataset.Load(d.Path, TrainingData.ParseReferenceLayout(d.Layout), TrainingData.LoadOptions(d)).Examples); }
                catch (ModelFormatException e) { throw new InvalidRunConfigException("data.path", e.Message, e); }
            }
            Check(r.BertscoreLayers is null or >= 0, "refalign.bertscore_layers", "must be ≥ 0");
            Check(r.NumSamples >= 2, "refalign.num_samples", "must be ≥ 2 (the group baseline needs several samples)");
            Check(r.MaxNewTokens >= 1, "refalign.max_new_tokens", "must be ≥ 1");
            Check(r.Temperature > 0 && double.IsFinite(r.Temperature), "refalign.temperature", "must be > 0 (sampling)");
            Check(r.TopP > 0 && r.TopP <= 1, "refalign.top_p", "must be in (0, 1]");
            Check(r.TopK >= 0, "refalign.top_k", "must be ≥ 0");
            Check(r.LengthConstant >= 0 && double.IsFinite(r.LengthConstant), "refalign.length_constant", "must be ≥ 0");
            Check(r.AdvantageClip is null or > 0, "refalign.advantage_clip", "must be > 0 when set");
            Check(r.HarmfulWeight > 0 && double.IsFinite(r.HarmfulWeight), "refalign.harmful_weight", "must be > 0");
            Check(r.CalibrationAlpha >= 0 && double.IsFinite(r.CalibrationAlpha), "refalign.calibration_alpha", "must be ≥ 0");
            Check(r.CalibrationAlpha == 0 || r.Confidence, "refalign.calibration_alpha", "needs refalign.confidence = true");
        }
        var pg = c.PolicyGradient;
        if (c.IsGrpoFamily)
        {
            Check(pg.ClipEpsilon > 0 && pg.ClipEpsilon < 1, "policy_gradient.clip_epsilon", "must be in (0, 1)");
            Check(pg.KlCoef >= 0 && double.IsFinite(pg.KlCoef), "policy_gradient.kl_coef", "must be ≥ 0 (0 = no KL term)");
            Check(Enum.IsDefined(pg.LossAveraging), "policy_gradient.loss_averaging", "must be token or sequence");
        }
        else Check(pg == new PolicyGradientSection(), "policy_gradient", "is only used by grpo, rloo and reinforce_pp");

        var dist = c.Distributed;
        Check(Enum.IsDefined(dist.Mode), "distributed.mode", "must be sync or pipelined");
        Check(dist.MaxStaleness >= (dist.Mode == DistributedMode.Pipelined ? 1 : 0), "distributed.max_staleness",
            dist.Mode == DistributedMode.Pipelined ? "must be ≥ 1 in pipelined mode (it samples one version behind)" : "must be ≥ 0");
        Check(dist.Shards >= 1, "distributed.shards", "must be ≥ 1");
        Check(dist.ImportanceCap > 0 && double.IsFinite(dist.ImportanceCap), "distributed.importance_cap", "must be > 0");
        Check(dist.MaxRestarts >= 0, "distributed.max_restarts", "must be ≥ 0");
        Check(dist.StallTimeoutSeconds == 0 || (dist.StallTimeoutSeconds >= 1 && double.IsFinite(dist.StallTimeoutSeconds)),
            "distributed.stall_timeout_seconds", "must be 0 (never) or ≥ 1");
        return c;
    }

    /// <summary>
    /// Every number of the config is finite and within what float32 holds: the losses and the optimizer compute in float32,
    /// where a larger factor (preference.lambda = 1e308, a learning rate of 1e300) becomes infinity and the run's weights NaN.
    /// </summary>
    static void CheckNumbers(object section, string path)
    {
        foreach (var property in section.GetType().GetProperties())
        {
            if (property.GetIndexParameters().Length > 0 || property.IsDefined(typeof(System.Text.Json.Serialization.JsonIgnoreAttribute), true)) continue;
            var name = property.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonPropertyNameAttribute), true) is [System.Text.Json.Serialization.JsonPropertyNameAttribute a, ..]
                ? a.Name : System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(property.Name);
            var field = path.Length == 0 ? name : $"{path}.{name}";
            switch (property.GetValue(section))
            {
                case double d:
                    Check(double.IsFinite(d) && Math.Abs(d) <= float.MaxValue, field, $"is {d}; a number must be finite and within float32's range (±{float.MaxValue})");
                    break;
                case object nested when nested.GetType().Namespace == typeof(RunConfig).Namespace && nested.GetType().IsClass && nested is not string:
                    CheckNumbers(nested, field);
                    break;
            }
        }
    }

    static void Check(bool ok, string field, string message)
    {
        if (!ok) throw new InvalidRunConfigException(field, $"field '{field}' {message}.");
    }
}
