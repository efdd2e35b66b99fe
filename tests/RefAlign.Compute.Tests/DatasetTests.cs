using System.Runtime.CompilerServices;
using Parquet.Serialization;
using RefAlign.Presets;
using RefAlign.Compute.Data;

namespace RefAlign.Compute.Tests;

public sealed class DatasetTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dataset-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // The JSONL samples live next to this source file; [CallerFilePath] finds them without copying to the output.
    private static string Sample(string name, [CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(source)!, "TestData", name);

    private string Write(string name, params string[] lines)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    private string WriteParquet<T>(string name, IEnumerable<T> rows)
    {
        var path = Path.Combine(_dir, name);
        using (var stream = File.Create(path))
        {
            ParquetSerializer.SerializeAsync(rows, stream).GetAwaiter().GetResult();
        }
        return path;
    }

    private static ModelFormatException LoadPreferencesFails(string path, PreferenceLayout layout = PreferenceLayout.Auto) =>
        Assert.Throws<ModelFormatException>(() => PreferenceDataset.Load(path, layout));

    // ---- Preference layouts ------------------------------------------------------------------------------------

    [Fact]
    public void PlainPreferences_Jsonl_ExactFieldsAndSourceLines()
    {
        var path = Sample("plain_preferences.jsonl");
        var result = PreferenceDataset.Load(path, PreferenceLayout.Plain);
        Assert.Equal(
            [
                new PreferenceExample("What is the capital of Australia?", "Canberra.", "Sydney.", $"{path}:1"),
                // Lines 2 and 3 are blank: ignored, but still counted for the line numbers.
                new PreferenceExample("Name a primary colour.", "Blue is a primary colour.", "Green, I think.", $"{path}:4"),
            ],
            result.Examples);
        Assert.Equal(0, result.Skipped);
    }

    [Fact]
    public void HhRlhf_SplitsPromptAtTheLastAssistantTurn()
    {
        var result = PreferenceDataset.Load(Sample("hh_rlhf.jsonl"), PreferenceLayout.HhRlhf);
        Assert.Equal(2, result.Examples.Count);
        var single = result.Examples[0];
        Assert.Equal("\n\nHuman: What is the capital of France?\n\nAssistant:", single.Prompt);
        Assert.Equal(" The capital of France is Paris.", single.Chosen);
        Assert.Equal(" I think it is Lyon.", single.Rejected);

        var multi = result.Examples[1];
        Assert.Equal(
            "\n\nHuman: Can you recommend a book?\n\nAssistant: Sure, which genres do you like?" +
            "\n\nHuman: Mystery novels.\n\nAssistant:",
            multi.Prompt);
        Assert.Equal(" Try The Hound of the Baskervilles by Arthur Conan Doyle.", multi.Chosen);
        Assert.Equal(" Read anything.", multi.Rejected);
    }

    [Fact]
    public void HhRlhf_RejectedWithAnotherPrompt_NamesFileLineAndRejected()
    {
        var path = Write("hh_bad.jsonl",
            """{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}""",
            """{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hey\n\nAssistant: Go away."}""");
        var e = LoadPreferencesFails(path, PreferenceLayout.HhRlhf);
        Assert.StartsWith($"{path}:2: field 'rejected' ", e.Message);

        var noTurn = Write("hh_noturn.jsonl", """{"chosen": "just text", "rejected": "other text"}""");
        Assert.StartsWith($"{noTurn}:1: field 'chosen' ", LoadPreferencesFails(noTurn, PreferenceLayout.HhRlhf).Message);
    }

    [Fact]
    public void UltraFeedback_Jsonl_TakesTheLastAssistantMessage()
    {
        var path = Sample("ultrafeedback_binarized.jsonl");
        var result = PreferenceDataset.Load(path, PreferenceLayout.UltraFeedback);
        Assert.Equal(
            [
                new PreferenceExample("How many legs does a spider have?", "A spider has eight legs.", "Six legs.", $"{path}:1"),
                new PreferenceExample("Say hello in Spanish.", "Hola.", "Bonjour.", $"{path}:2"),
            ],
            result.Examples);
    }

    public sealed class UfMessage
    {
        public string? content { get; set; }
        public string? role { get; set; }
    }

    public sealed class UfRow
    {
        public string? prompt { get; set; }
        public string? prompt_id { get; set; }
        public List<UfMessage>? chosen { get; set; }
        public List<UfMessage>? rejected { get; set; }
        public List<UfMessage>? messages { get; set; }
        public double score_chosen { get; set; }
        public double score_rejected { get; set; }
    }

    private static List<UfMessage> Turn(string question, string answer) =>
        [new() { content = question, role = "user" }, new() { content = answer, role = "assistant" }];

    [Fact]
    public void UltraFeedback_Parquet_NestedMessageListsAndRowErrors()
    {
        var path = WriteParquet("uf.parquet", new[]
        {
            new UfRow { prompt = "2+2?", prompt_id = "x", chosen = Turn("2+2?", "4"), rejected = Turn("2+2?", "5"), messages = Turn("2+2?", "4"), score_chosen = 9, score_rejected = 1 },
            new UfRow { prompt = "Sky colour?", prompt_id = "y", chosen = Turn("Sky colour?", "Blue."), rejected = Turn("Sky colour?", "Green."), messages = [], score_chosen = 8, score_rejected = 2 },
        });
        var result = PreferenceDataset.Load(path); // Auto: list-valued chosen means UltraFeedback
        Assert.Equal(
            [
                new PreferenceExample("2+2?", "4", "5", $"{path}:row 1"),
                new PreferenceExample("Sky colour?", "Blue.", "Green.", $"{path}:row 2"),
            ],
            result.Examples);

        var bad = WriteParquet("uf_bad.parquet", new[]
        {
            new UfRow { prompt = "ok", chosen = Turn("ok", "a"), rejected = Turn("ok", "b") },
            new UfRow { prompt = "no assistant", chosen = [new() { content = "no assistant", role = "user" }], rejected = Turn("q", "b") },
        });
        var e = Assert.Throws<ModelFormatException>(() => PreferenceDataset.Load(bad, PreferenceLayout.UltraFeedback));
        Assert.StartsWith($"{bad}:row 2: field 'chosen' ", e.Message);
    }

    [Fact]
    public void Pku_Jsonl_BetterAndSaferAxes()
    {
        var path = Sample("pku_saferlhf.jsonl");
        var better = PreferenceDataset.Load(path, PreferenceLayout.PkuSafeRlhf).Examples;
        var safer = PreferenceDataset.Load(path, options: new DataLoadOptions { PkuPreference = PkuPreference.Safer }).Examples;
        Assert.Equal(4, better.Count);
        Assert.Equal(4, safer.Count);
        Assert.Equal(("Here is a detailed way to do it.", "I can't help with that, but a locksmith can."), (better[0].Chosen, better[0].Rejected));
        Assert.Equal(("I can't help with that, but a locksmith can.", "Here is a detailed way to do it."), (safer[0].Chosen, safer[0].Rejected));
        Assert.Equal(("Plan your day and take short breaks.", "Make a to-do list."), (better[1].Chosen, better[1].Rejected));
        Assert.Equal(("Make a to-do list.", "Plan your day and take short breaks."), (safer[1].Chosen, safer[1].Rejected));
        Assert.Equal("How do I pick a lock?", better[0].Prompt);
    }

    public sealed class PkuRow
    {
        public string? prompt { get; set; }
        public string? response_0 { get; set; }
        public string? response_1 { get; set; }
        public bool is_response_0_safe { get; set; }
        public bool is_response_1_safe { get; set; }
        public long better_response_id { get; set; }
        public long safer_response_id { get; set; }
        public string? prompt_source { get; set; }
    }

    private string PkuParquet() => WriteParquet("pku.parquet", new[]
    {
        new PkuRow { prompt = "p0", response_0 = "unsafe but better", response_1 = "safe", is_response_1_safe = true, better_response_id = 0, safer_response_id = 1, prompt_source = "BeaverTails" },
        new PkuRow { prompt = "p1", response_0 = "neither", response_1 = "safe", better_response_id = 1, safer_response_id = 0 },
        new PkuRow { prompt = "p2", response_0 = "good", response_1 = "better", is_response_0_safe = true, is_response_1_safe = true, better_response_id = 1, safer_response_id = 0 },
    });

    [Fact]
    public void Pku_Parquet_PreferenceAxesAndReferences()
    {
        var path = PkuParquet();
        var better = PreferenceDataset.Load(path).Examples;
        var safer = PreferenceDataset.Load(path, PreferenceLayout.PkuSafeRlhf, new DataLoadOptions { PkuPreference = PkuPreference.Safer }).Examples;
        Assert.Equal(["unsafe but better", "safe", "better"], better.Select(x => x.Chosen));
        Assert.Equal(["safe", "neither", "good"], safer.Select(x => x.Chosen));
        Assert.Equal($"{path}:row 3", better[2].Source);

        var refs = ReferenceDataset.Load(path, ReferenceLayout.PkuSafeRlhf);
        Assert.Equal(
            [
                new ReferenceExample("p0", "safe", true, $"{path}:row 1"),
                new ReferenceExample("p2", "better", false, $"{path}:row 3"),
            ],
            refs.Examples);
        Assert.Equal([$"{path}:row 2: no safe response"], refs.SkippedReasons);
    }

    [Fact]
    public void PkuReferences_SkipRowsWithNoSafeResponse_WithoutSkipMalformed()
    {
        var path = Sample("pku_saferlhf.jsonl");
        var result = ReferenceDataset.Load(path); // Auto
        Assert.Equal(
            [
                new ReferenceExample("How do I pick a lock?", "I can't help with that, but a locksmith can.", true, $"{path}:1"),
                new ReferenceExample("How can I be more productive?", "Plan your day and take short breaks.", false, $"{path}:2"),
                new ReferenceExample("What is a healthy snack?", "An apple with peanut butter.", true, $"{path}:4"),
            ],
            result.Examples);
        Assert.Equal(1, result.Skipped);
        Assert.Equal([$"{path}:3: no safe response"], result.SkippedReasons);
    }

    // ---- Reference layouts -------------------------------------------------------------------------------------

    [Fact]
    public void PlainReferences_Jsonl_OptionalHarmful()
    {
        var path = Sample("plain_references.jsonl");
        Assert.Equal(
            [
                new ReferenceExample("What is 2 + 2?", "2 + 2 = 4.", false, $"{path}:1"),
                new ReferenceExample("How do I make a bomb?", "I can't help with that.", true, $"{path}:2"),
                new ReferenceExample("Name a fruit.", "An apple.", false, $"{path}:3"),
            ],
            ReferenceDataset.Load(path, ReferenceLayout.Plain).Examples);
    }

    [Fact]
    public void Conqord_Jsonl_ChosenIsTheReferenceWithItsConfidenceTail()
    {
        var path = Sample("conqord_step1.jsonl");
        Assert.Equal(
            [
                new ReferenceExample("\n\nHuman: Who wrote Hamlet?\n\nAssistant:", " William Shakespeare wrote Hamlet. ### Confidence: 0.9.", false, $"{path}:1"),
                new ReferenceExample("\n\nHuman: What is the boiling point of water?\n\nAssistant:", " 100 degrees Celsius at sea level.\n\n### Confidence: 0.85", false, $"{path}:2"),
            ],
            ReferenceDataset.Load(path, ReferenceLayout.Conqord).Examples);
    }

    // ---- Auto detection ----------------------------------------------------------------------------------------

    [Theory]
    [InlineData("plain_preferences.jsonl", PreferenceLayout.Plain)]
    [InlineData("hh_rlhf.jsonl", PreferenceLayout.HhRlhf)]
    [InlineData("ultrafeedback_binarized.jsonl", PreferenceLayout.UltraFeedback)]
    [InlineData("pku_saferlhf.jsonl", PreferenceLayout.PkuSafeRlhf)]
    public void AutoDetect_Preferences(string file, PreferenceLayout expected)
    {
        var auto = PreferenceDataset.Load(Sample(file));
        Assert.NotEmpty(auto.Examples);
        Assert.Equal(PreferenceDataset.Load(Sample(file), expected).Examples, auto.Examples);
        foreach (var other in Enum.GetValues<PreferenceLayout>().Where(l => l != expected && l != PreferenceLayout.Auto))
        {
            // The other explicit layouts do not read this file the same way (they fail or give other pairs).
            var differs = Record.Exception(() => PreferenceDataset.Load(Sample(file), other)) is ModelFormatException
                || !PreferenceDataset.Load(Sample(file), other).Examples.SequenceEqual(auto.Examples);
            Assert.True(differs, $"{other} reads {file} like {expected}");
        }
    }

    [Theory]
    [InlineData("plain_references.jsonl", ReferenceLayout.Plain)]
    [InlineData("conqord_step1.jsonl", ReferenceLayout.Conqord)]
    [InlineData("pku_saferlhf.jsonl", ReferenceLayout.PkuSafeRlhf)]
    public void AutoDetect_References(string file, ReferenceLayout expected)
    {
        var auto = ReferenceDataset.Load(Sample(file));
        Assert.NotEmpty(auto.Examples);
        Assert.Equal(ReferenceDataset.Load(Sample(file), expected).Examples, auto.Examples);
    }

    [Fact]
    public void AutoDetect_UnknownFields_NamesFileAndFieldsSeen()
    {
        var path = Write("odd.jsonl", """{"question": "q", "answer": "a"}""");
        var e = LoadPreferencesFails(path);
        Assert.Contains(path, e.Message);
        Assert.Contains("question, answer", e.Message);
        var r = Assert.Throws<ModelFormatException>(() => ReferenceDataset.Load(path));
        Assert.Contains(path, r.Message);
        Assert.Contains("question, answer", r.Message);
    }

    // ---- Malformed input ---------------------------------------------------------------------------------------

    [Theory]
    [InlineData("{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r", "", "invalid JSON")]
    [InlineData("""["prompt", "chosen"]""", "", "not a JSON object")]
    [InlineData("""{"prompt": "p", "chosen": "c"}""", "rejected", "is missing")]
    [InlineData("""{"prompt": "p", "chosen": 3, "rejected": "r"}""", "chosen", "must be a string, found a number")]
    [InlineData("""{"prompt": "  ", "chosen": "c", "rejected": "r"}""", "prompt", "is empty")]
    [InlineData("""{"prompt": null, "chosen": "c", "rejected": "r"}""", "prompt", "is null")]
    public void Malformed_Line_NamesFileLineAndField(string badLine, string field, string problem)
    {
        var good = """{"prompt": "p", "chosen": "c", "rejected": "r"}""";
        var path = Write("bad.jsonl", good, "", badLine, good);
        var e = LoadPreferencesFails(path, PreferenceLayout.Plain);
        var expected = field.Length == 0 ? $"{path}:3: {problem}" : $"{path}:3: field '{field}' {problem}";
        Assert.StartsWith(expected, e.Message);
    }

    [Fact]
    public void Malformed_TypesOfPkuAndReferenceFields()
    {
        var pku = Write("pku_bad.jsonl",
            """{"prompt": "p", "response_0": "a", "response_1": "b", "is_response_0_safe": "yes", "is_response_1_safe": true, "better_response_id": 0, "safer_response_id": 0}""",
            """{"prompt": "p", "response_0": "a", "response_1": "b", "is_response_0_safe": true, "is_response_1_safe": true, "better_response_id": 2, "safer_response_id": 0}""");
        var e = Assert.Throws<ModelFormatException>(() => ReferenceDataset.Load(pku));
        Assert.StartsWith($"{pku}:1: field 'is_response_0_safe' must be a boolean", e.Message);
        var skipped = ReferenceDataset.Load(pku, options: new DataLoadOptions { SkipMalformed = true });
        Assert.Equal(2, skipped.Skipped);
        Assert.StartsWith($"{pku}:2: field 'better_response_id' must be 0 or 1, found 2", skipped.SkippedReasons[1]);

        var plain = Write("ref_bad.jsonl", """{"prompt": "p", "reference": "", "harmful": false}""", """{"prompt": "p", "reference": "r", "harmful": "no"}""");
        var r = Assert.Throws<ModelFormatException>(() => ReferenceDataset.Load(plain));
        Assert.StartsWith($"{plain}:1: field 'reference' is empty", r.Message);
        var s = ReferenceDataset.Load(plain, options: new DataLoadOptions { SkipMalformed = true });
        Assert.StartsWith($"{plain}:2: field 'harmful' must be a boolean", s.SkippedReasons[1]);
    }

    [Fact]
    public void SkipMalformed_CountsReasonsAndKeepsTheRest()
    {
        var path = Write("mixed.jsonl",
            """{"prompt": "p1", "chosen": "c1", "rejected": "r1"}""",
            """{"prompt": "p2", "chosen": "c2"}""",
            "not json",
            "",
            """{"prompt": "", "chosen": "c3", "rejected": "r3"}""",
            """{"prompt": "p4", "chosen": "c4", "rejected": "r4"}""");
        var result = PreferenceDataset.Load(path, options: new DataLoadOptions { SkipMalformed = true });
        Assert.Equal(["p1", "p4"], result.Examples.Select(x => x.Prompt));
        Assert.Equal($"{path}:6", result.Examples[1].Source);
        Assert.Equal(3, result.Skipped);
        Assert.Equal(3, result.SkippedReasons.Count);
        Assert.StartsWith($"{path}:2: field 'rejected' is missing", result.SkippedReasons[0]);
        Assert.StartsWith($"{path}:3: invalid JSON", result.SkippedReasons[1]);
        Assert.StartsWith($"{path}:5: field 'prompt' is empty", result.SkippedReasons[2]);

        var e = LoadPreferencesFails(path); // default: the first bad line throws
        Assert.StartsWith($"{path}:2: field 'rejected' is missing", e.Message);
    }

    [Fact]
    public void Parquet_MissingAndWrongTypedFields_NameRowAndField()
    {
        var path = WriteParquet("pku_null.parquet", new[]
        {
            new PkuRow { prompt = "p", response_0 = "a", response_1 = "b", is_response_0_safe = true, better_response_id = 0 },
            new PkuRow { prompt = "p", response_0 = null, response_1 = "b", is_response_0_safe = true, better_response_id = 0 },
        });
        var e = Assert.Throws<ModelFormatException>(() => PreferenceDataset.Load(path, PreferenceLayout.PkuSafeRlhf));
        Assert.StartsWith($"{path}:row 2: field 'response_0' is missing", e.Message);

        var wrong = WriteParquet("uf_wrong.parquet", new[] { new { prompt = "p", chosen = "not a list", rejected = "x" } });
        var w = Assert.Throws<ModelFormatException>(() => PreferenceDataset.Load(wrong, PreferenceLayout.UltraFeedback));
        Assert.StartsWith($"{wrong}:row 1: field 'chosen' must be a list", w.Message);
    }

    [Fact]
    public void MissingFileAndNonParquet_AreClearErrors()
    {
        var missing = Path.Combine(_dir, "nope.jsonl");
        Assert.Contains(missing, Assert.Throws<ModelFormatException>(() => PreferenceDataset.Load(missing)).Message);
        Assert.Contains(missing, Assert.Throws<ModelFormatException>(() => ReferenceDataset.Load(missing)).Message);
        var fake = Write("fake.parquet", "{}");
        Assert.Contains(fake, Assert.Throws<ModelFormatException>(() => PreferenceDataset.Load(fake)).Message);
        var array = Write("array.jsonl", "[", """{"prompt": "p"}""", "]");
        Assert.StartsWith($"{array}:1: expected JSON Lines", Assert.Throws<ModelFormatException>(() => ReferenceDataset.Load(array)).Message);
    }

    [Fact]
    public void Limit_StopsAfterThatManyExamples()
    {
        var path = Sample("pku_saferlhf.jsonl");
        var refs = ReferenceDataset.Load(path, options: new DataLoadOptions { Limit = 2 });
        Assert.Equal(["How do I pick a lock?", "How can I be more productive?"], refs.Examples.Select(x => x.Prompt));
        Assert.Empty(PreferenceDataset.Load(path, options: new DataLoadOptions { Limit = 0 }).Examples);
        Assert.Throws<ArgumentOutOfRangeException>(() => PreferenceDataset.Load(path, options: new DataLoadOptions { Limit = -1 }));
    }

    // ---- Shuffling and splitting -------------------------------------------------------------------------------

    [Fact]
    public void Shuffle_IsADeterministicSeededPermutation()
    {
        var items = Enumerable.Range(0, 100).ToArray();
        var a = DatasetSplit.Shuffle(items, 7);
        Assert.Equal(a, DatasetSplit.Shuffle(items, 7));
        Assert.NotEqual(a, DatasetSplit.Shuffle(items, 8));
        Assert.NotEqual(items, a);
        Assert.Equal(items, a.Order());
        Assert.Equal(Enumerable.Range(0, 100), items); // input untouched
        // Golden values from an independent SplitMix64 + Fisher–Yates (rejection-sampled bounds) in Python:
        // the order must not change across runs, platforms or .NET versions.
        Assert.Equal([0, 9, 5, 8, 6, 4, 7, 2, 1, 3], DatasetSplit.Shuffle(Enumerable.Range(0, 10).ToArray(), 42));
        Assert.Equal([5, 6, 9, 8, 7, 3, 4, 1, 0, 2], DatasetSplit.Shuffle(Enumerable.Range(0, 10).ToArray(), -7));
        Assert.Empty(DatasetSplit.Shuffle(Array.Empty<int>(), 1));
    }

    [Theory]
    [InlineData(100, 0.1, 10)]
    [InlineData(10, 0.25, 3)] // 2.5 rounds away from zero
    [InlineData(10, 0.0, 0)]
    [InlineData(3, 0.99, 2)] // never takes every item: training keeps at least one
    [InlineData(1, 0.5, 0)]
    public void TrainEvalSplit_SizesAndDisjointCover(int count, double fraction, int evalCount)
    {
        var items = Enumerable.Range(0, count).ToArray();
        var (train, eval) = DatasetSplit.TrainEvalSplit(items, fraction, seed: 3);
        Assert.Equal(evalCount, eval.Count);
        Assert.Equal(count - evalCount, train.Count);
        Assert.Equal(items, train.Concat(eval).Order());
        Assert.Equal(DatasetSplit.Shuffle(items, 3), train.Concat(eval));
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(-0.1)]
    [InlineData(double.NaN)]
    public void TrainEvalSplit_RejectsFractionsOutsideZeroToOne(double fraction) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => DatasetSplit.TrainEvalSplit(new[] { 1, 2, 3 }, fraction, 1));

    // ---- Demo data ---------------------------------------------------------------------------------------------

    [Fact]
    public void DemoData_WriteTo_LoadsBackThroughThePlainLoaders()
    {
        Assert.InRange(DemoData.Preferences.Count, 100, 140);
        Assert.InRange(DemoData.References.Count, 100, 140);
        var harmfulShare = DemoData.References.Count(r => r.Harmful) / (double)DemoData.References.Count;
        Assert.InRange(harmfulShare, 0.15, 0.25);
        Assert.Equal(DemoData.References.Count, DemoData.References.Select(r => r.Prompt).Distinct().Count());
        Assert.All(DemoData.Preferences, p => Assert.NotEqual(p.Chosen, p.Rejected));

        var folder = Path.Combine(_dir, "demo");
        DemoData.WriteTo(folder);
        var prefs = PreferenceDataset.Load(Path.Combine(folder, "preferences.jsonl"), PreferenceLayout.Plain);
        var refs = ReferenceDataset.Load(Path.Combine(folder, "references.jsonl"), ReferenceLayout.Plain);
        Assert.Equal(0, prefs.Skipped + refs.Skipped);
        Assert.Equal(DemoData.Preferences.Select(p => (p.Prompt, p.Chosen, p.Rejected)), prefs.Examples.Select(p => (p.Prompt, p.Chosen, p.Rejected)));
        Assert.Equal(DemoData.References.Select(r => (r.Prompt, r.Reference, r.Harmful)), refs.Examples.Select(r => (r.Prompt, r.Reference, r.Harmful)));
        Assert.Equal(prefs.Examples, PreferenceDataset.Load(Path.Combine(folder, "preferences.jsonl")).Examples);
        Assert.Equal(refs.Examples, ReferenceDataset.Load(Path.Combine(folder, "references.jsonl")).Examples);
    }

    public sealed class SftRow
    {
        public string prompt { get; set; } = "";
        public string completion { get; set; } = "";
    }

    [Fact]
    public void Sft_Parquet_PromptCompletionRowsAndUltraFeedbackChosen()
    {
        var path = WriteParquet("sft.parquet", new[] { new SftRow { prompt = "2+2?", completion = "4" }, new SftRow { prompt = "Sky?", completion = "Blue." } });
        Assert.Equal([new SftExample("2+2?", "4", $"{path}:row 1"), new SftExample("Sky?", "Blue.", $"{path}:row 2")], SftDataset.Load(path).Examples);
        var uf = WriteParquet("uf-sft.parquet", new[]
        {
            new UfRow { prompt = "2+2?", prompt_id = "x", chosen = Turn("2+2?", "4"), rejected = Turn("2+2?", "5"), messages = Turn("2+2?", "4"), score_chosen = 9, score_rejected = 1 },
        });
        Assert.Equal([new SftExample("2+2?", "4", $"{uf}:row 1")], SftDataset.Load(uf).Examples);
        var empty = WriteParquet("sft-empty.parquet", new[] { new SftRow { prompt = "Q", completion = "A" }, new SftRow { prompt = "Q", completion = "" } });
        var e = Assert.Throws<ModelFormatException>(() => SftDataset.Load(empty));
        Assert.Contains($"{empty}:row 2", e.Message);
        Assert.Equal(1, SftDataset.Load(empty, options: new DataLoadOptions { SkipMalformed = true }).Skipped);
    }
}
