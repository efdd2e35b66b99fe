using RefAlign.Compute.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Training.Checkpoints;

/// <summary>
/// Capture and restore of torch random-generator states as plain bytes (the generator's own serialized state,
/// <c>Generator.get_state</c>), so sampling and dropout resume exactly. Only CPU generators are covered: TorchSharp
/// exposes no per-device CUDA generator state, so CUDA draws after a resume are reseeded, not continued.
/// </summary>
public static class RngState
{
    public static byte[] Capture(Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        using var state = generator.get_state();
        return Bytes(state);
    }

    public static void Restore(Generator generator, byte[] state)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(state);
        using var current = generator.get_state();
        if (current.NumberOfElements != state.Length)
            throw new ArgumentException(
                $"generator state has {state.Length} bytes but this generator's state has {current.NumberOfElements} (not a state of this generator kind).",
                nameof(state));
        using var t = tensor(state, ScalarType.Byte, device: CPU);
        generator.set_state(t);
    }

    /// <summary>State of torch's default CPU generator (the one used when no generator is passed).</summary>
    public static byte[] CaptureDefault()
    {
        using var state = random.get_rng_state();
        return Bytes(state);
    }

    public static void RestoreDefault(byte[] state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var current = random.get_rng_state();
        if (current.NumberOfElements != state.Length)
            throw new ArgumentException(
                $"generator state has {state.Length} bytes but the default generator's state has {current.NumberOfElements}.", nameof(state));
        using var t = tensor(state, ScalarType.Byte, device: CPU);
        random.set_rng_state(t);
    }

    /// <summary>Writes named states as U8 tensors of one safetensors file (atomically).</summary>
    public static void SaveFile(string file, IReadOnlyDictionary<string, byte[]> states)
    {
        ArgumentNullException.ThrowIfNull(states);
        using var scope = NewDisposeScope();
        var tensors = states.ToDictionary(kv => kv.Key, kv => tensor(kv.Value, ScalarType.Byte, device: CPU), StringComparer.Ordinal);
        SafeTensors.SaveFile(file, tensors, new Dictionary<string, string> { ["refalign_rng_state"] = "1" });
    }

    /// <summary>Reads states written by <see cref="SaveFile"/>; a tensor that is not 1-D U8 is a <see cref="ModelFormatException"/>.</summary>
    public static Dictionary<string, byte[]> LoadFile(string file)
    {
        var tensors = SafeTensors.LoadFile(file);
        try
        {
            var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            foreach (var (name, t) in tensors)
            {
                if (t.dtype != ScalarType.Byte || t.Dimensions != 1)
                    throw new ModelFormatException($"{file}: tensor '{name}' is not a 1-D U8 generator state.");
                result[name] = Bytes(t);
            }
            return result;
        }
        finally
        {
            foreach (var t in tensors.Values)
                t.Dispose();
        }
    }

    static byte[] Bytes(Tensor state)
    {
        using var cpu = state.cpu();
        using var contiguous = cpu.contiguous();
        return contiguous.bytes.ToArray();
    }
}
