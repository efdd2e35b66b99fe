using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Serialization;

namespace RefAlign.Compute.Data;

/// <summary>
/// One record of a data set file: its fields, or why the line could not be parsed. <see cref="Location"/> is
/// <c>file:line</c> (JSON Lines, 1-based) or <c>file:row N</c> (Parquet, 1-based).
/// </summary>
internal readonly record struct RawRecord(JsonObject? Fields, string Location, string? Error);

/// <summary>
/// Reads JSON Lines and Parquet data set files into JSON objects, so every layout is parsed by one code path.
/// A file is Parquet when it starts with the <c>PAR1</c> magic; anything else is read as JSON Lines.
/// Parquet values come from Parquet.Net's untyped serializer (strings, numbers, booleans, lists as
/// <c>List&lt;…&gt;</c>, structs as <c>Dictionary&lt;string, object&gt;</c>; null values are absent keys) and
/// are converted to the equivalent JSON nodes.
/// </summary>
internal static class DatasetFile
{
    private static ReadOnlySpan<byte> ParquetMagic => "PAR1"u8;

    /// <summary>Checks the file eagerly (missing file, wrong format), then enumerates its records lazily.</summary>
    public static IEnumerable<RawRecord> Read(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (Directory.Exists(path))
        {
            throw new ModelFormatException($"Data set path '{path}' is a folder; pass a .jsonl or .parquet file.");
        }
        if (!File.Exists(path))
        {
            throw new ModelFormatException($"Data set file '{path}' does not exist.");
        }
        if (StartsWithParquetMagic(path))
        {
            return ReadParquet(path, OpenParquet(path));
        }
        if (path.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase))
        {
            throw new ModelFormatException($"{path}: not a Parquet file (it does not start with the 'PAR1' magic bytes).");
        }
        return ReadJsonLines(path);
    }

    private static bool StartsWithParquetMagic(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using var stream = Files.ReadRoots.Current.OpenRead(path);
        return stream.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && head.SequenceEqual(ParquetMagic);
    }

    private static IEnumerable<RawRecord> ReadJsonLines(string path)
    {
        using var reader = new StreamReader(Files.ReadRoots.Current.OpenRead(path), Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var lineNumber = 0;
        var sawContent = false;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            var location = $"{path}:{lineNumber}";
            if (!sawContent && line.TrimStart().StartsWith('['))
            {
                throw new ModelFormatException(
                    $"{location}: expected JSON Lines (one JSON object per line) but the file starts with '[' " +
                    "(a JSON array); convert it to one object per line.");
            }
            sawContent = true;
            var (fields, error) = ParseLine(line);
            yield return new RawRecord(fields, location, error);
        }
    }

    private static (JsonObject? Fields, string? Error) ParseLine(string line)
    {
        try
        {
            var node = JsonNode.Parse(line);
            if (node is not JsonObject obj)
            {
                return (null, $"not a JSON object (found {Describe(node)})");
            }
            _ = obj.Count; // materialises the properties: duplicate names throw here
            return (obj, null);
        }
        catch (JsonException e)
        {
            return (null, $"invalid JSON ({e.Message})");
        }
        catch (ArgumentException e)
        {
            return (null, $"invalid JSON object ({e.Message})");
        }
    }

    private sealed record ParquetSource(int RowGroups);

    private static ParquetSource OpenParquet(string path)
    {
        try
        {
            return RunSync(async () =>
            {
                await using var stream = Files.ReadRoots.Current.OpenRead(path);
                await using var reader = await ParquetReader.CreateAsync(stream).ConfigureAwait(false);
                return new ParquetSource(reader.RowGroupCount);
            });
        }
        catch (Exception e) when (e is not ModelFormatException)
        {
            throw new ModelFormatException($"{path}: cannot read the Parquet file ({e.Message})", e);
        }
    }

    private static IEnumerable<RawRecord> ReadParquet(string path, ParquetSource source)
    {
        long row = 0;
        for (var group = 0; group < source.RowGroups; group++)
        {
            IList<Dictionary<string, object>> rows;
            try
            {
                var index = group;
                rows = RunSync(async () =>
                {
                    await using var stream = Files.ReadRoots.Current.OpenRead(path);
                    var result = await ParquetSerializer.DeserializeUntypedAsync(stream, null, index).ConfigureAwait(false);
                    return result.Data;
                });
            }
            catch (Exception e)
            {
                throw new ModelFormatException($"{path}: cannot read row group {group} of the Parquet file ({e.Message})", e);
            }
            foreach (var values in rows)
            {
                row++;
                yield return new RawRecord(ToJsonObject(values), $"{path}:row {row}", null);
            }
        }
    }

    // Parquet.Net is async-only; Task.Run keeps the continuation off any caller's single-threaded scheduler.
    private static T RunSync<T>(Func<Task<T>> work) => Task.Run(work).GetAwaiter().GetResult();

    private static JsonObject ToJsonObject(IEnumerable<KeyValuePair<string, object>> values)
    {
        var obj = new JsonObject();
        foreach (var (key, value) in values)
        {
            obj[key] = ToJsonNode(value);
        }
        return obj;
    }

    private static JsonNode? ToJsonNode(object? value) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        ReadOnlyMemory<char> m => JsonValue.Create(m.ToString()),
        bool b => JsonValue.Create(b),
        sbyte or byte or short or ushort or int or uint or long => JsonValue.Create(Convert.ToInt64(value, CultureInfo.InvariantCulture)),
        ulong u => JsonValue.Create(u),
        float f => JsonValue.Create((double)f),
        double d => JsonValue.Create(d),
        decimal d => JsonValue.Create(d),
        IEnumerable<KeyValuePair<string, object>> fields => ToJsonObject(fields),
        System.Collections.IEnumerable items => ToJsonArray(items),
        _ => JsonValue.Create(Convert.ToString(value, CultureInfo.InvariantCulture)),
    };

    private static JsonArray ToJsonArray(System.Collections.IEnumerable items)
    {
        var array = new JsonArray();
        foreach (var item in items)
        {
            array.Add(ToJsonNode(item));
        }
        return array;
    }

    /// <summary>A short description of a JSON value's kind for error messages ("a string", "null", …).</summary>
    public static string Describe(JsonNode? node) => node is null ? "null" : node.GetValueKind() switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Null => "null",
        var kind => kind.ToString(),
    };
}
