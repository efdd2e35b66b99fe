using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;
using RefAlign.Compute.Files;
using TorchSharp;

namespace RefAlign.Compute.Formats;

/// <summary>
/// Hugging Face model folders: <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c>, laid out the way <c>save_pretrained</c> writes them.
/// </summary>
public static partial class ModelWeights
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    [GeneratedRegex(@"\Amodel-\d{5}-of-\d{5}\.safetensors\z")]
    private static partial Regex ShardName();

    /// <summary>Loads every tensor of the folder (single file preferred over an index, as transformers does).</summary>
    public static Dictionary<string, torch.Tensor> Load(string folder, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        using var sources = Sources.Open(folder);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, (src, info)) in sources.Tensors)
            {
                var t = SafeTensors.ReadTensor(src.Handle, src.DataStart, info, src.Path);
                result.Add(name, SafeTensors.Convert(t, dtype, device));
            }
        }
        catch
        {
            foreach (var t in result.Values)
            {
                t.Dispose();
            }
            throw;
        }
        return result;
    }

    /// <summary>The named tensors of the folder only (a head beside a body loaded elsewhere); a missing name is an error naming it.</summary>
    public static Dictionary<string, torch.Tensor> LoadNamed(string folder, IReadOnlyCollection<string> names, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        using var sources = Sources.Open(folder);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        foreach (var name in names)
        {
            if (!sources.Tensors.TryGetValue(name, out var found))
            {
                foreach (var t in result.Values) t.Dispose();
                throw new ModelFormatException($"{sources.Description}: tensor '{name}' is missing.");
            }
            var raw = SafeTensors.ReadTensor(found.Src.Handle, found.Src.DataStart, found.Info, found.Src.Path);
            result.Add(name, SafeTensors.Convert(raw, dtype, device));
        }
        return result;
    }

    /// <summary>The names of every tensor in the folder's weight files.</summary>
    public static IReadOnlyCollection<string> TensorNames(string folder)
    {
        using var sources = Sources.Open(folder);
        return [.. sources.Tensors.Keys];
    }

    /// <summary>
    /// Writes <c>model.safetensors</c>, or shards plus an index when the total exceeds
    /// <paramref name="maxShardBytes"/> (huggingface_hub's split: tensors in the given order, a new shard when
    /// the next tensor would overflow, an oversize tensor alone in its own shard). Stale files of a previous
    /// save are removed after the new ones are in place.
    /// </summary>
    public static void Save(string folder, IReadOnlyDictionary<string, torch.Tensor> tensors, long maxShardBytes = long.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        Directory.CreateDirectory(folder);

        var shards = new List<Dictionary<string, torch.Tensor>>();
        var current = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        long currentSize = 0, totalSize = 0;
        foreach (var (name, tensor) in tensors)
        {
            var size = tensor.NumberOfElements * tensor.ElementSize;
            totalSize += size;
            if (size > maxShardBytes)
            {
                shards.Add(new Dictionary<string, torch.Tensor>(StringComparer.Ordinal) { [name] = tensor });
                continue;
            }
            if (current.Count > 0 && currentSize + size > maxShardBytes)
            {
                shards.Add(current);
                current = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
                currentSize = 0;
            }
            current[name] = tensor;
            currentSize += size;
        }
        if (current.Count > 0 || shards.Count == 0)
        {
            shards.Add(current);
        }

        var keep = new HashSet<string>(StringComparer.Ordinal);
        if (shards.Count == 1)
        {
            SafeTensors.SaveFile(Path.Combine(folder, SingleFile), shards[0]);
            keep.Add(SingleFile);
        }
        else
        {
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < shards.Count; i++)
            {
                var name = string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors");
                SafeTensors.SaveFile(Path.Combine(folder, name), shards[i]);
                keep.Add(name);
                foreach (var t in shards[i].Keys)
                {
                    weightMap[t] = name;
                }
            }
            WriteAtomically(Path.Combine(folder, IndexFile), IndexJson(totalSize, weightMap));
            keep.Add(IndexFile);
        }

        foreach (var path in Directory.EnumerateFiles(folder))
        {
            var name = Path.GetFileName(path);
            if (!keep.Contains(name) && (name is SingleFile or IndexFile || ShardName().IsMatch(name)))
            {
                File.Delete(path);
            }
        }
    }

    /// <summary>
    /// Copies the folder's tensors into the module's parameters and buffers by state_dict name, converting
    /// dtype and device. Everything is checked before anything is copied, so a bad folder leaves the module
    /// untouched. Returns the names in the files that the module does not have.
    /// </summary>
    public static IReadOnlyList<string> LoadInto(torch.nn.Module module, string folder, Func<string, bool>? isOptional = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var sources = Sources.Open(folder);
        var (plan, unexpected) = Plan(module, sources, isOptional);
        using (torch.no_grad())
        {
            foreach (var (target, src, info) in plan)
            {
                using var loaded = SafeTensors.ReadTensor(src.Handle, src.DataStart, info, src.Path);
                target.copy_(loaded);
            }
        }
        return unexpected;
    }

    /// <summary>
    /// What <see cref="LoadInto"/> checks, without reading a weight: every tensor the module needs is in the folder with
    /// its shape (the same errors). Returns the names in the files that the module does not have.
    /// </summary>
    public static IReadOnlyList<string> Check(torch.nn.Module module, string folder, Func<string, bool>? isOptional = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var sources = Sources.Open(folder);
        return Plan(module, sources, isOptional).Unexpected;
    }

    /// <summary>
    /// What <see cref="Check"/> checks, against the tensors a config implies (<see cref="Models.ModelFootprint"/>) rather
    /// than a built module: only the weight files' headers are read, so a config that claims a huge model costs nothing
    /// to check. Returns the names in the files that are not expected.
    /// </summary>
    public static IReadOnlyList<string> CheckShapes(string folder, IEnumerable<(string Name, long[] Shape)> expected, Func<string, bool>? isOptional = null)
    {
        using var sources = Sources.Open(folder);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            names.Add(name);
            Find(sources, name, shape, isOptional);
        }
        return sources.Tensors.Keys.Where(n => !names.Contains(n)).ToList();
    }

    /// <summary>The shape of every tensor of the folder's weight files, from their headers (no weight is read).</summary>
    public static Dictionary<string, long[]> ReadShapes(string folder)
    {
        using var sources = Sources.Open(folder);
        return sources.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.Info.Shape, StringComparer.Ordinal);
    }

    /// <summary>The weights file or index of the folder, as messages about a missing tensor name it.</summary>
    public static string Describe(string folder) =>
        File.Exists(Path.Combine(folder, SingleFile)) ? Path.Combine(folder, SingleFile) : Path.Combine(folder, IndexFile);

    private static (List<(torch.Tensor Target, Source Src, SafeTensorInfo Info)> Plan, IReadOnlyList<string> Unexpected) Plan(
        torch.nn.Module module, Sources sources, Func<string, bool>? isOptional)
    {
        var expected = module.state_dict();
        var plan = new List<(torch.Tensor Target, Source Src, SafeTensorInfo Info)>(expected.Count);
        foreach (var (name, target) in expected)
        {
            if (Find(sources, name, target.shape, isOptional) is (var src, var info)) plan.Add((target, src, info));
        }
        return (plan, sources.Tensors.Keys.Where(n => !expected.ContainsKey(n)).ToList());
    }

    /// <summary>Where tensor <paramref name="name"/> of <paramref name="shape"/> is; null when it is optional and absent.</summary>
    private static (Source Src, SafeTensorInfo Info)? Find(Sources sources, string name, long[] shape, Func<string, bool>? isOptional)
    {
        if (!sources.Tensors.TryGetValue(name, out var found))
        {
            if (isOptional?.Invoke(name) == true)
            {
                return null;
            }
            throw new ModelFormatException(
                $"{sources.Description}: has no tensor '{name}', which the module needs (shape {Shape(shape)}).");
        }
        if (!found.Info.Shape.AsSpan().SequenceEqual(shape))
        {
            throw new ModelFormatException(
                $"{found.Src.Path}: tensor '{name}' has shape {Shape(found.Info.Shape)} in the file but the module expects {Shape(shape)}.");
        }
        return found;
    }

    private static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";

    // Python's json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers writes it.
    private static string IndexJson(long totalSize, Dictionary<string, string> weightMap)
    {
        var sb = new StringBuilder();
        sb.Append("{\n  \"metadata\": {\n    \"total_size\": ").Append(totalSize.ToString(CultureInfo.InvariantCulture));
        sb.Append("\n  },\n  \"weight_map\": {");
        var first = true;
        foreach (var (name, file) in weightMap.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            sb.Append(first ? "\n    " : ",\n    ");
            first = false;
            PyString(sb, name).Append(": ");
            PyString(sb, file);
        }
        sb.Append(first ? "}\n}\n" : "\n  }\n}\n");
        return sb.ToString();
    }

    // Python json's ensure_ascii escaping, as transformers writes the index.
    private static StringBuilder PyString(StringBuilder sb, string s) => SafeTensorsHeader.AppendString(sb, s, escapeNonAscii: true);

    /// <summary>Writes <paramref name="text"/> (UTF-8, no BOM) to a temporary file beside <paramref name="path"/>, then renames it there.</summary>
    public static void WriteAtomically(string path, string text)
    {
        var temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            File.WriteAllText(temp, text, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    private sealed record Source(string Path, SafeFileHandle Handle, long DataStart);

    /// <summary>The open weight files of a folder and where each tensor lives; headers validated.</summary>
    private sealed class Sources : IDisposable
    {
        private readonly List<Source> _files = [];

        /// <summary>The weights file or index, for messages about tensors that are missing altogether.</summary>
        public string Description { get; private set; } = "";

        public Dictionary<string, (Source Src, SafeTensorInfo Info)> Tensors { get; } = new(StringComparer.Ordinal);

        public static Sources Open(string folder)
        {
            var sources = new Sources();
            try
            {
                var single = Path.Combine(folder, SingleFile);
                var index = Path.Combine(folder, IndexFile);
                if (File.Exists(single))
                {
                    sources.Description = single;
                    sources.Add(single);
                }
                else if (File.Exists(index))
                {
                    sources.Description = index;
                    sources.AddIndexed(folder, index);
                }
                else
                {
                    throw new ModelFormatException($"{folder}: has neither {SingleFile} nor {IndexFile}.");
                }
                return sources;
            }
            catch
            {
                sources.Dispose();
                throw;
            }
        }

        private Dictionary<string, SafeTensorInfo> Add(string path)
        {
            var handle = SafeTensors.Open(path);
            _files.Add(new Source(path, handle, 0));
            var (infos, _, dataStart) = SafeTensors.ReadHeader(handle, path);
            var src = _files[^1] = new Source(path, handle, dataStart);
            foreach (var info in infos.Values)
            {
                if (!Tensors.TryAdd(info.Name, (src, info)))
                {
                    throw new ModelFormatException(
                        $"{path}: tensor '{info.Name}' is also in {Tensors[info.Name].Src.Path}.");
                }
            }
            return infos;
        }

        private void AddIndexed(string folder, string index)
        {
            var weightMap = ReadWeightMap(index);
            foreach (var group in weightMap.GroupBy(kv => kv.Value, StringComparer.Ordinal))
            {
                var shard = group.Key;
                var path = Path.Combine(folder, shard);
                if (Path.IsPathRooted(shard) || shard.Split('/', '\\').Contains("..") || !File.Exists(path))
                {
                    throw new ModelFormatException(
                        $"{index}: shard file '{shard}' (holding tensor '{group.First().Key}') is missing from {folder}.");
                }
                var infos = Add(path);
                foreach (var (name, _) in group)
                {
                    if (!infos.ContainsKey(name))
                    {
                        throw new ModelFormatException($"{index}: tensor '{name}' is mapped to {path}, which does not contain it.");
                    }
                }
            }
        }

        private static Dictionary<string, string> ReadWeightMap(string index)
        {
            try
            {
                using var doc = JsonDocument.Parse(ReadRoots.Current.ReadAllBytes(index));
                if (doc.RootElement.ValueKind != JsonValueKind.Object
                    || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                {
                    throw new ModelFormatException($"{index}: has no 'weight_map' object.");
                }
                var result = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var kv in map.EnumerateObject())
                {
                    result[kv.Name] = kv.Value.ValueKind == JsonValueKind.String
                        ? kv.Value.GetString()!
                        : throw new ModelFormatException($"{index}: weight_map entry for tensor '{kv.Name}' is not a file name.");
                }
                return result;
            }
            catch (JsonException e)
            {
                throw new ModelFormatException($"{index}: is not valid JSON ({e.Message}).", e);
            }
        }

        public void Dispose()
        {
            foreach (var f in _files)
            {
                f.Handle.Dispose();
            }
            _files.Clear();
        }
    }
}
