using System.Buffers.Binary;
using System.Text;

namespace RefAlign.TestSupport;

/// <summary>
/// An independent reader of TensorBoard event files for tests: TensorFlow's record framing with its masked CRC32C
/// (computed here bit by bit, not with the product's table) and the protobuf wire format parsed by hand, so a test
/// checks the bytes, not our writer against itself.
/// </summary>
public static class TensorBoardEvents
{
    public sealed record Scalar(long Step, string Tag, float Value);

    public sealed record Contents(string? FileVersion, IReadOnlyList<Scalar> Scalars);

    public static Contents Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        string? version = null;
        var scalars = new List<Scalar>();
        var at = 0;
        while (at < bytes.Length)
        {
            if (bytes.Length - at < 12) throw new InvalidDataException($"{path}: truncated record header at byte {at}.");
            var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at));
            if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 8)) != MaskedCrc(bytes.AsSpan(at, 8)))
                throw new InvalidDataException($"{path}: length CRC mismatch at byte {at}.");
            var data = bytes.AsSpan(at + 12, length);
            if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 12 + length)) != MaskedCrc(data))
                throw new InvalidDataException($"{path}: data CRC mismatch at byte {at}.");
            long step = 0;
            foreach (var (field, value) in Fields(data.ToArray()))
            {
                if (field == 2) step = (long)(ulong)value;
                else if (field == 3) version = Encoding.UTF8.GetString((byte[])value);
                else if (field == 5)
                    foreach (var (vf, v) in Fields((byte[])value).Where(f => f.Field == 1))
                    {
                        var parts = Fields((byte[])v).ToDictionary(p => p.Field, p => p.Value);
                        scalars.Add(new Scalar(step, Encoding.UTF8.GetString((byte[])parts[1]), (float)parts[2]));
                    }
            }
            at += 12 + length + 4;
        }
        return new Contents(version, scalars);
    }

    /// <summary>Top-level fields of a message: varints as ulong, 64-bit as the raw ulong, 32-bit as float, bytes as byte[].</summary>
    static IEnumerable<(int Field, object Value)> Fields(byte[] m)
    {
        var i = 0;
        ulong Varint()
        {
            ulong v = 0;
            for (var shift = 0; ; shift += 7)
            {
                var b = m[i++];
                v |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80) return v;
            }
        }
        while (i < m.Length)
        {
            var key = Varint();
            var (field, wire) = ((int)(key >> 3), (int)(key & 7));
            switch (wire)
            {
                case 0: yield return (field, Varint()); break;
                case 1: yield return (field, BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan(i))); i += 8; break;
                case 5: yield return (field, BinaryPrimitives.ReadSingleLittleEndian(m.AsSpan(i))); i += 4; break;
                case 2:
                    var n = (int)Varint();
                    yield return (field, m.AsSpan(i, n).ToArray());
                    i += n;
                    break;
                default: throw new InvalidDataException($"unexpected wire type {wire}.");
            }
        }
    }

    static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (uint)-(int)(crc & 1));
        }
        crc = ~crc;
        return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
    }
}
