using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace RefAlign.Compute.Formats;

/// <summary>One tensor of a safetensors file; offsets are relative to the start of the data buffer.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End);

/// <summary>
/// Reads and writes the Hugging Face safetensors format: an 8-byte little-endian header length, a JSON
/// header, then the raw little-endian tensor bytes. Bytes are copied straight between the file and tensor
/// memory, so F16/BF16 values are preserved bit for bit in both directions.
/// </summary>
public static class SafeTensors
{
    // Tensor memory is exposed as Span<byte>, which stops at int.MaxValue: larger tensors go in chunks.
    private const long ChunkBytes = 1L << 30;

    public static IReadOnlyDictionary<string, SafeTensorInfo> ReadHeader(
        string file, out IReadOnlyDictionary<string, string> metadata)
    {
        using var handle = Open(file);
        var (infos, meta, _) = ReadHeader(handle, file);
        metadata = meta;
        return infos;
    }

    /// <summary>Loads every tensor; <paramref name="dtype"/> null keeps the file dtype, <paramref name="device"/> null means CPU.</summary>
    public static Dictionary<string, torch.Tensor> LoadFile(string file, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        using var handle = Open(file);
        var (infos, _, dataStart) = ReadHeader(handle, file);
        var result = new Dictionary<string, torch.Tensor>(infos.Count, StringComparer.Ordinal);
        try
        {
            foreach (var info in infos.Values)
            {
                result.Add(info.Name, Convert(ReadTensor(handle, dataStart, info, file), dtype, device));
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

    /// <summary>
    /// Writes atomically (temp file, then rename) in each tensor's own dtype, with <c>__metadata__</c>
    /// holding <c>format: pt</c> plus <paramref name="metadata"/>. Tensors are ordered the way the Python
    /// library orders them (widest dtype first, then by name), so the output matches its <c>save_file</c>.
    /// </summary>
    public static void SaveFile(
        string file, IReadOnlyDictionary<string, torch.Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.ContainsKey(SafeTensorsHeader.MetadataKey))
        {
            throw new ArgumentException($"'{SafeTensorsHeader.MetadataKey}' is reserved and cannot name a tensor.", nameof(tensors));
        }
        var meta = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        foreach (var (k, v) in (metadata ?? new Dictionary<string, string>()).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            meta[k] = v;
        }

        var ordered = tensors
            .Select(kv => (kv.Key, kv.Value, DType: SafeTensorsHeader.NameOf(kv.Value.dtype, kv.Key)))
            .OrderByDescending(e => SafeTensorsHeader.RustRank(e.DType))
            .ThenBy(e => e.Key, StringComparer.Ordinal)
            .ToList();
        var infos = new List<SafeTensorInfo>(ordered.Count);
        long offset = 0;
        foreach (var (name, tensor, dt) in ordered)
        {
            var bytes = tensor.NumberOfElements * tensor.ElementSize;
            infos.Add(new SafeTensorInfo(name, dt, tensor.shape, offset, offset + bytes));
            offset += bytes;
        }
        var header = SafeTensorsHeader.Serialize(meta, infos);

        var full = Path.GetFullPath(file);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = $"{full}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                foreach (var (_, tensor, _) in ordered)
                {
                    WriteTensor(stream, tensor);
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    internal static SafeFileHandle Open(string file)
    {
        try
        {
            // Inside the silo's read roots, whatever links lead there (a process without roots reads anywhere).
            return Files.ReadRoots.Current.OpenHandle(file, FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"{file}: cannot open the safetensors file ({e.Message}).", e);
        }
    }

    internal static (Dictionary<string, SafeTensorInfo> Infos, Dictionary<string, string> Metadata, long DataStart) ReadHeader(
        SafeFileHandle handle, string file)
    {
        var length = RandomAccess.GetLength(handle);
        if (length < 8)
        {
            throw new ModelFormatException($"{file}: {length} bytes is too short for a safetensors file (no header length).");
        }
        Span<byte> prefix = stackalloc byte[8];
        ReadExactly(handle, prefix, 0, file, "the header length");
        var n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > SafeTensorsHeader.MaxHeaderBytes)
        {
            throw new ModelFormatException($"{file}: the safetensors header claims {n} bytes, more than the {SafeTensorsHeader.MaxHeaderBytes} allowed (not a safetensors file?).");
        }
        if (8 + (long)n > length)
        {
            throw new ModelFormatException($"{file}: the safetensors header claims {n} bytes but the file has only {length - 8} after the length (truncated file?).");
        }
        var json = new byte[n];
        ReadExactly(handle, json, 8, file, "the header");
        if (n == 0 || json[0] != (byte)'{')
        {
            throw new ModelFormatException($"{file}: the safetensors header does not start with '{{'.");
        }
        var dataStart = 8 + (long)n;
        var infos = SafeTensorsHeader.Parse(json, length - dataStart, file, out var metadata);
        return (infos, metadata, dataStart);
    }

    /// <summary>Reads one tensor, already validated against the file, into a new CPU tensor of the file dtype.</summary>
    internal static torch.Tensor ReadTensor(SafeFileHandle handle, long dataStart, SafeTensorInfo info, string file)
    {
        var (type, _) = SafeTensorsHeader.Resolve(info.DType, file, info.Name);
        var tensor = torch.empty(info.Shape, type, torch.CPU);
        try
        {
            using var flat = tensor.view(-1);
            var elementSize = tensor.ElementSize;
            var perChunk = Math.Max(1, ChunkBytes / elementSize);
            var position = dataStart + info.Begin;
            for (long start = 0; start < flat.NumberOfElements; start += perChunk)
            {
                using var chunk = flat.narrow(0, start, Math.Min(perChunk, flat.NumberOfElements - start));
                var span = chunk.bytes;
                ReadExactly(handle, span, position, file, $"tensor '{info.Name}'");
                position += span.Length;
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>Converts to the requested dtype/device, disposing the source when a copy was made.</summary>
    internal static torch.Tensor Convert(torch.Tensor tensor, torch.ScalarType? dtype, torch.Device? device)
    {
        // The source is always a fresh CPU tensor here.
        if ((dtype is null || dtype == tensor.dtype) && (device is null || device.type == DeviceType.CPU))
        {
            return tensor;
        }
        using (tensor)
        {
            return tensor.to(dtype ?? tensor.dtype, device ?? torch.CPU);
        }
    }

    private static void WriteTensor(Stream stream, torch.Tensor tensor)
    {
        if (tensor.NumberOfElements == 0)
        {
            return;
        }
        // Raw bytes of a contiguous CPU copy (an alias when it already is one): no value conversion.
        using var scope = torch.NewDisposeScope();
        var flat = tensor.detach().cpu().contiguous().view(-1);
        var perChunk = Math.Max(1, ChunkBytes / flat.ElementSize);
        for (long start = 0; start < flat.NumberOfElements; start += perChunk)
        {
            var chunk = flat.narrow(0, start, Math.Min(perChunk, flat.NumberOfElements - start));
            stream.Write(chunk.bytes);
        }
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string file, string what)
    {
        while (!buffer.IsEmpty)
        {
            var read = RandomAccess.Read(handle, buffer, offset);
            if (read <= 0)
            {
                throw new ModelFormatException($"{file}: the file ended while reading {what} (truncated file?).");
            }
            buffer = buffer[read..];
            offset += read;
        }
    }
}
