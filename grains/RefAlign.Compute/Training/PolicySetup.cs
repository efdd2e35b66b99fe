using RefAlign.Compute.Models;
using RefAlign.Compute.Models.Lora;
using RefAlign.Compute.Tokenization;
using TorchSharp.Modules;

namespace RefAlign.Compute.Training;

/// <summary>
/// How a policy is put together for a run, in one place for the learner, the in-process trainer, the rollout
/// replicas and the CLI, so every copy of the policy has the same special ids, adapters and trainable tensors.
/// </summary>
public static class PolicySetup
{
    /// <summary>EOS ids of the tokenizer and config.json together; pad = the tokenizer's, the config's, else the first EOS (0 without one).</summary>
    public static (IReadOnlyList<int> Eos, int Pad) SpecialIds(TextTokenizer tokenizer, CausalLm policy)
    {
        IReadOnlyList<int> eos = [.. tokenizer.EosIds.Concat(policy.Config.EosTokenIds).Distinct()];
        return (eos, tokenizer.PadId ?? policy.Config.PadTokenId ?? (eos.Count > 0 ? eos[0] : 0));
    }

    /// <summary>The run's LoRA adapters on <paramref name="policy"/> (seeded, so every replica starts identical), or null.</summary>
    public static LoraAdapters? AttachLora(CausalLm policy, RunConfig config) =>
        config.Policy.Lora is { } l
            ? LoraAdapters.Attach(policy, new LoraConfig
            {
                Rank = l.Rank, Alpha = l.Alpha, Dropout = l.Dropout, TargetModules = l.TargetModules,
                BaseModelNameOrPath = config.Policy.Model,
            }, config.Seed)
            : null;

    /// <summary>
    /// <paramref name="model"/> in eval mode (no dropout) until the result is disposed, then back in the mode it was in:
    /// sampling, scoring and evaluation are judgements, not training.
    /// </summary>
    public static IDisposable EvalMode(TorchSharp.torch.nn.Module model)
    {
        var wasTraining = model.training;
        model.eval();
        return new ModeRestore(model, wasTraining);
    }

    sealed class ModeRestore(TorchSharp.torch.nn.Module model, bool training) : IDisposable
    {
        public void Dispose()
        {
            if (training) model.train();
        }
    }

    /// <summary>What a run trains, by name: the LoRA adapters when there are any, else every policy weight.</summary>
    public static IEnumerable<(string Name, Parameter Parameter)> Trainable(CausalLm policy, LoraAdapters? lora) =>
        (lora is not null ? lora.named_parameters() : policy.named_parameters()).Select(p => (p.name, p.parameter));
}
