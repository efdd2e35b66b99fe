using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using RefAlign.Compute;

namespace RefAlign.Presets;

/// <summary>One question with its verifiable answer and the family it belongs to.</summary>
public sealed record VerifiableItem(string Prompt, string Answer, string Family);

/// <summary>
/// A verifiable demo task (docs/algorithms.md §9): small arithmetic (sums and differences of single digits) and unit
/// conversions (kilometres, hours, metres, minutes, dozens), every answer one digit, each prompt ending in
/// "The answer is" so the answer is the next thing said. All combinations, in an order fixed by a seeded shuffle:
/// the file is the same on every machine. A <c>rule</c> reward checks the last number of a response against
/// <c>"answer"</c>; the tiny presets can learn the answer format, and more, in a few dozen GRPO steps on a CPU.
/// </summary>
public static class VerifiableData
{
    public const string FileName = "verifiable.jsonl";

    public static IReadOnlyList<VerifiableItem> Items { get; } = Build();

    static VerifiableItem[] Build()
    {
        var items = new List<VerifiableItem>();
        for (var a = 0; a <= 9; a++)
            for (var b = 0; a + b <= 9; b++)
                items.Add(new($"What is {a} + {b}? The answer is", (a + b).ToString(System.Globalization.CultureInfo.InvariantCulture), "addition"));
        for (var a = 0; a <= 9; a++)
            for (var b = 0; b <= a; b++)
                items.Add(new($"What is {a} - {b}? The answer is", (a - b).ToString(System.Globalization.CultureInfo.InvariantCulture), "subtraction"));
        (string Question, int Per)[] conversions =
        [
            ("How many kilometres are {0} metres?", 1000), ("How many hours are {0} minutes?", 60),
            ("How many metres are {0} centimetres?", 100), ("How many minutes are {0} seconds?", 60), ("How many dozens are {0} eggs?", 12),
        ];
        foreach (var (question, per) in conversions)
            for (var n = 1; n <= 9; n++)
                items.Add(new(string.Format(System.Globalization.CultureInfo.InvariantCulture, question, n * per) + " The answer is",
                    n.ToString(System.Globalization.CultureInfo.InvariantCulture), "conversion"));
        // Fisher–Yates with SplitMix64 (docs/algorithms.md §5), so the order never depends on the runtime's Random.
        var rng = new SplitMix64(SplitMix64.Mix(0x7E51F1AB));
        for (var i = items.Count - 1; i > 0; i--)
        {
            var j = (int)rng.NextBelow((ulong)i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
        return [.. items];
    }

    /// <summary>Writes <c>verifiable.jsonl</c> (<c>{"prompt", "answer"}</c> per line, plain reference layout) into <paramref name="folder"/>.</summary>
    public static string WriteTo(string folder)
    {
        Directory.CreateDirectory(folder);
        var options = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var text = new StringBuilder();
        foreach (var item in Items)
            text.Append(JsonSerializer.Serialize(new Dictionary<string, string> { ["prompt"] = item.Prompt, ["answer"] = item.Answer }, options)).Append('\n');
        var path = Path.Combine(folder, FileName);
        File.WriteAllText(path, text.ToString(), new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        return path;
    }
}
