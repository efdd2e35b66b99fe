using System.Buffers.Binary;
using Google.Protobuf;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Telemetry;

/// <summary>
/// A run's scalars as a TensorBoard event file (<c>events.out.tfevents.&lt;time&gt;.&lt;host&gt;</c>) in its output folder:
/// every step's metrics, tokens/s and phase times (<c>phase/…</c>), and every evaluation's metrics. Records are framed
/// as TensorFlow's record writer frames them (length, masked CRC32C of the length, data, masked CRC32C of the data) and
/// flushed one by one, so TensorBoard can follow a live run and a crash loses no finished step. The messages are
/// <c>tensorboard_event.proto</c>'s, written field by field with protobuf's own encoder: the compute layer takes no
/// gRPC tooling (a layering rule the dependency tests hold).
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
        Write(Event(Seconds(now), 0, o => o.WriteString("brain.Event:2"), FileVersionField));
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
        // Summary { repeated Value value = 1; }, Value { string tag = 1; float simple_value = 2; }
        var summary = new MemoryStream();
        using (var o = new CodedOutputStream(summary, leaveOpen: true))
        {
            foreach (var (tag, value) in scalars.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                var entry = new MemoryStream();
                using (var v = new CodedOutputStream(entry, leaveOpen: true))
                {
                    v.WriteTag(1, WireFormat.WireType.LengthDelimited);
                    v.WriteString(tag);
                    v.WriteTag(2, WireFormat.WireType.Fixed32);
                    v.WriteFloat((float)value);
                }
                o.WriteTag(1, WireFormat.WireType.LengthDelimited);
                o.WriteBytes(ByteString.CopyFrom(entry.ToArray()));
            }
        }
        Write(Event(Seconds(DateTimeOffset.UtcNow), step, o => o.WriteBytes(ByteString.CopyFrom(summary.ToArray())), SummaryField));
    }

    const int FileVersionField = 3, SummaryField = 5;

    /// <summary>Event { double wall_time = 1; int64 step = 2; oneof what { string file_version = 3; Summary summary = 5; } }.</summary>
    static byte[] Event(double wallTime, long step, Action<CodedOutputStream> what, int whatField)
    {
        var bytes = new MemoryStream();
        using (var o = new CodedOutputStream(bytes, leaveOpen: true))
        {
            o.WriteTag(1, WireFormat.WireType.Fixed64);
            o.WriteDouble(wallTime);
            if (step != 0)
            {
                o.WriteTag(2, WireFormat.WireType.Varint);
                o.WriteInt64(step);
            }
            o.WriteTag(whatField, WireFormat.WireType.LengthDelimited);
            what(o);
        }
        return bytes.ToArray();
    }

    static double Seconds(DateTimeOffset t) => t.ToUnixTimeMilliseconds() / 1000.0;

    void Write(byte[] data)
    {
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
