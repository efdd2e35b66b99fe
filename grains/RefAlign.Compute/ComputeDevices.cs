using System.Globalization;
using static TorchSharp.torch;

namespace RefAlign.Compute;

/// <summary>
/// The device a process computes on, checked against the libtorch it loaded: <c>cpu</c>, <c>cuda</c> (= <c>cuda:0</c>)
/// or <c>cuda:N</c>. Asking for a GPU on a CPU build, or for a device the machine does not have, fails at once with the
/// setting's name, what the build has and how to get the CUDA build, instead of training on the CPU without a word.
/// </summary>
public static class ComputeDevices
{
    /// <summary>What the loaded libtorch can drive: <c>cpu</c> (a CPU build, or no GPU visible) or <c>cuda (N devices)</c>.</summary>
    public static string Build => cuda.is_available() ? string.Create(CultureInfo.InvariantCulture, $"cuda ({cuda.device_count()} devices)") : "cpu";

    /// <summary>The canonical name of <paramref name="name"/> (<c>cuda</c> → <c>cuda:0</c>); throws for what is not a device name.</summary>
    public static string Canonical(string name, string setting)
    {
        var value = name.Trim().ToLowerInvariant();
        if (value is "cpu") return value;
        if (value == "cuda") return "cuda:0";
        if (value.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(value.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            return string.Create(CultureInfo.InvariantCulture, $"cuda:{n}");
        throw new DeviceUnavailableException(setting, $"{setting} is '{name}', which is not a device; use cpu, cuda or cuda:N.");
    }

    /// <summary>The device <paramref name="name"/> names, after checking that this process can use it.</summary>
    public static Device Resolve(string name, string setting)
    {
        var canonical = Canonical(name, setting);
        TorchLoader.RequireLibTorch(setting);
        if (canonical.StartsWith("cuda:", StringComparison.Ordinal))
        {
            var index = int.Parse(canonical.AsSpan(5), CultureInfo.InvariantCulture);
            if (!cuda.is_available())
                throw new DeviceUnavailableException(setting,
                    $"{setting} is '{name}', but the loaded libtorch is a CPU build (or sees no CUDA device). Build with -p:TorchBackend=cuda " +
                    "(TorchSharp-cuda-linux from your NuGet feed) on a machine with an NVIDIA driver, or load a CUDA libtorch from a folder " +
                    "(--libtorch DIR, Silo:LibTorchPath; docs/gpu.md), or set it to cpu.");
            var count = cuda.device_count();
            if (index >= count)
                throw new DeviceUnavailableException(setting,
                    string.Create(CultureInfo.InvariantCulture, $"{setting} is '{name}', but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})."));
        }
        return device(canonical);
    }
}

/// <summary>A configured device this process cannot use; <see cref="Setting"/> names the setting or option.</summary>
public sealed class DeviceUnavailableException(string setting, string message) : Exception(message)
{
    public string Setting { get; } = setting;
}
