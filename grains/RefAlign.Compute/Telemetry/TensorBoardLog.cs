using System.Buffers.Binary;
using Google.Protobuf;
using RefAlign.Compute.Telemetry.TensorBoard;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Telemetry;

/// <summary>
/// A run's scalars as a TensorBoard event file (<c>events.out.tfevents.&lt;time&gt;.&lt;host&gt;</c>) in its output folder:
/// every step's metrics, tokens/s and phase times (<c>phase/…</c>), and every evaluation's metrics. Records are framed
/// as TensorFlow's record writer frames them (length, masked CRC32C of the length, data, masked CRC32C of the data) and
/// flushed one by one, so TensorBoard can follow a live run and a crash loses no finished step.
/// </summary>
public sealed class TensorBoardLog : IRunObserver, IDisposable
{
    readonly FileStream _file;

    public string Path { get; }

    public TensorBoardLog(string folder)
    {
        Directory.CreateDirectory(folder);
        var now = DateTimeOffset.UtcNow;
        Path = System.IO.Path.Combine(folder, $"events.out.tfevents.{now.ToUnixTimeSeconds()}.{Environment.MachineName}.{Environment.ProcessId}");
        _file = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
        Write(new Event { WallTime = Seconds(now), FileVersion = "brain.Event:2" });
    }

    public void OnStep(StepReport r)
    {
        // Events count steps from 1 (steps done), as metrics.jsonl's step numbers count from 0: TensorBoard shows steps done.
        var scalars = new Dictionary<string, double>(r.Metrics) { ["tokens_per_second"] = r.TokensPerSecond };
        foreach (var (phase, seconds) in r.PhaseSeconds) scalars[$"phase/{phase}"] = seconds;
        WriteScalars(r.Step + 1, scalars);
    }

    public void OnEval(int step, IReadOnlyDictionary<string, double> metrics) => WriteScalars(step, metrics);

    void WriteScalars(long step, IReadOnlyDictionary<string, double> scalars)
    {
        var summary = new Summary();
        foreach (var (tag, value) in scalars.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            summary.Value.Add(new Summary.Types.Value { Tag = tag, SimpleValue = (float)value });
        Write(new Event { WallTime = Seconds(DateTimeOffset.UtcNow), Step = step, Summary = summary });
    }

    static double Seconds(DateTimeOffset t) => t.ToUnixTimeMilliseconds() / 1000.0;

    void Write(Event e)
    {
        var data = e.ToByteArray();
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Crc32C.Masked(header[..8]));
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, Crc32C.Masked(data));
        lock (_file)
        {
            _file.Write(header);
            _file.Write(data);
            _file.Write(footer);
            _file.Flush();
        }
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>CRC-32C (Castagnoli), reflected, as TensorFlow's record framing uses it, with its mask.</summary>
public static class Crc32C
{
    static readonly uint[] Table = Enumerable.Range(0, 256).Select(i =>
    {
        var c = (uint)i;
        for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }

    /// <summary>TensorFlow's masked CRC: rotated right by 15 bits plus a constant, so CRCs of CRCs stay well spread.</summary>
    public static uint Masked(ReadOnlySpan<byte> data)
    {
        var crc = Compute(data);
        return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
    }
}
