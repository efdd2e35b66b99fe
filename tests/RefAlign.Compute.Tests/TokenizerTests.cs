using System.Text;
using System.Text.Json;
using RefAlign.Presets;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Tokenization.SentencePiece;

namespace RefAlign.Compute.Tests;

public sealed class TokenizerTests : IDisposable
{
    private readonly DirectoryInfo root = Directory.CreateTempSubdirectory("refalign-tok-");

    public void Dispose() => root.Delete(recursive: true);

    private static readonly string[] UnusualTexts =
    [
        "Hello world",
        "  leading and  double   spaces ",
        "emoji 😀👍 and accents: café, naïve, Zürich",
        "日本語のテキスト and Ελληνικά",
        "digits 0123456789 3.14159 -42 1,000,000",
        "tabs\tand\nnew lines\r\n",
        "symbols ~!@#$%^&*()_+{}|:\"<>?",
        "",
    ];

    private string Dir(string name) => Directory.CreateDirectory(Path.Combine(root.FullName, name)).FullName;

    private string SentencePieceFolder()
    {
        var dir = Dir("sp");
        TokenizerWriter.WriteSentencePiece(dir, DemoCorpus.Sentences, 1000);
        return dir;
    }

    private string ByteLevelFolder(string name = "bl")
    {
        var dir = Dir(name);
        TokenizerWriter.WriteByteLevelBpe(dir, DemoCorpus.Sentences, 800);
        return dir;
    }

    [Fact]
    public void SentencePiece_WrittenFolder_LoadsWithLlamaSpecialTokens()
    {
        var dir = Dir("sp");
        var size = TokenizerWriter.WriteSentencePiece(dir, DemoCorpus.Sentences, 1000);
        var tok = TextTokenizer.Load(dir);

        Assert.Equal(size, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal([2], tok.EosIds);
        Assert.Equal(0, tok.UnkId);
        Assert.Null(tok.PadId);
        Assert.True(tok.AddBosToken);
    }

    [Fact]
    public void SentencePiece_EncodeDecode_RoundTripsCorpusAndUnusualText()
    {
        var tok = TextTokenizer.Load(SentencePieceFolder());
        foreach (var text in DemoCorpus.Sentences.Concat(UnusualTexts))
        {
            var ids = tok.Encode(text);
            Assert.Equal(1, ids[0]);
            Assert.All(ids, id => Assert.InRange(id, 0, tok.VocabSize - 1));
            Assert.Equal(text, tok.Decode(ids));
        }
        // A trained vocabulary must actually compress common text, not spell it byte by byte.
        Assert.True(tok.Encode("What is the capital of Australia?", addSpecialTokens: false).Count <= 10);
        Assert.DoesNotContain(1, tok.Encode("Hello", addSpecialTokens: false));
    }

    [Fact]
    public void SentencePiece_EosStringInsideText_MapsToEosId()
    {
        var tok = TextTokenizer.Load(SentencePieceFolder());
        var ids = tok.Encode("Hello</s>");

        Assert.Equal(2, ids[^1]);
        Assert.Single(ids, 2);
        Assert.Equal("Hello", tok.Decode(ids));
        Assert.Equal("<s>Hello</s>", tok.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void SentencePiece_HandMadeVocabulary_GivesExpectedIds()
    {
        var dir = Dir("sp-hand");
        var pieces = new List<SentencePieceEntry>
        {
            new("<unk>", 0, PieceType.Unknown),
            new("<s>", 0, PieceType.Control),
            new("</s>", 0, PieceType.Control),
        };
        for (var b = 0; b < 256; b++) pieces.Add(new($"<0x{b:X2}>", 0, PieceType.Byte));
        // ids 259..: merged pieces by score (higher merges first), then single characters.
        pieces.Add(new("▁t", -1, PieceType.Normal));   // 259
        pieces.Add(new("he", -2, PieceType.Normal));   // 260
        pieces.Add(new("▁the", -3, PieceType.Normal)); // 261
        pieces.Add(new("▁", -4, PieceType.Normal));    // 262
        pieces.Add(new("t", -5, PieceType.Normal));    // 263
        pieces.Add(new("h", -6, PieceType.Normal));    // 264
        pieces.Add(new("e", -7, PieceType.Normal));    // 265
        pieces.Add(new("a", -8, PieceType.Normal));    // 266
        SentencePieceModelWriter.Write(Path.Combine(dir, "tokenizer.model"), pieces);

        var tok = TextTokenizer.Load(dir); // no side files: Llama defaults from the model itself
        Assert.Equal(267, tok.VocabSize);
        Assert.True(tok.AddBosToken);
        // "▁the▁tea": "▁t" (best score) twice, then "he", then "▁t"+"he"; "▁te" is not a piece.
        Assert.Equal([1, 261, 259, 265, 266], tok.Encode("the tea"));
        // 'z' is not a piece: byte fallback to <0x7A> = 3 + 0x7A.
        Assert.Equal([1, 261, 262, 3 + 0x7A], tok.Encode("the z"));
        Assert.Equal([261, 2], tok.Encode("the</s>", addSpecialTokens: false));
        Assert.Equal("the tea z", tok.Decode([1, 261, 259, 265, 266, 262, 3 + 0x7A, 2]));
    }

    [Fact]
    public void ByteLevel_WrittenFolder_RoundTripsAndMapsSpecialTokens()
    {
        var dir = Dir("bl");
        var size = TokenizerWriter.WriteByteLevelBpe(dir, DemoCorpus.Sentences, 800);
        var tok = TextTokenizer.Load(dir);

        Assert.Equal(size, tok.VocabSize);
        Assert.False(tok.AddBosToken);
        int endOfText = size - 3, imStart = size - 2, imEnd = size - 1;
        Assert.Equal([endOfText], tok.EosIds);
        Assert.Equal(endOfText, tok.PadId);
        using (var vocab = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "vocab.json"))))
            Assert.False(vocab.RootElement.TryGetProperty("<|im_end|>", out _)); // Qwen2 layout

        foreach (var text in DemoCorpus.Sentences.Concat(UnusualTexts))
        {
            var ids = tok.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 0, size - 4));
            Assert.Equal(text, tok.Decode(ids));
        }

        var chat = tok.Encode("<|im_start|>user\nHi there<|im_end|><|endoftext|>");
        Assert.Equal(imStart, chat[0]);
        Assert.Equal([imEnd, endOfText], chat.TakeLast(2));
        Assert.Equal("user\nHi there", tok.Decode(chat));
        Assert.Equal("<|im_start|>user\nHi there<|im_end|><|endoftext|>", tok.Decode(chat, skipSpecialTokens: false));
    }

    [Fact]
    public void ByteLevel_VocabJsonAndMergesTxtOnly_Loads()
    {
        var full = TextTokenizer.Load(ByteLevelFolder("full"));
        var dir = ByteLevelFolder("plain");
        File.Delete(Path.Combine(dir, "tokenizer.json"));

        // tokenizer_config.json's added_tokens_decoder still supplies the special tokens.
        var withConfig = TextTokenizer.Load(dir);
        Assert.Equal(full.VocabSize, withConfig.VocabSize);
        Assert.Equal(full.Encode("<|im_start|>Hello<|im_end|>"), withConfig.Encode("<|im_start|>Hello<|im_end|>"));

        File.Delete(Path.Combine(dir, "tokenizer_config.json"));
        var bare = TextTokenizer.Load(dir);
        Assert.Empty(bare.EosIds);
        foreach (var text in DemoCorpus.Sentences.Take(50).Concat(UnusualTexts))
            Assert.Equal(text, bare.Decode(bare.Encode(text)));
    }

    [Fact]
    public void ByteLevel_HandMadeVocabulary_AppliesMergesByRank()
    {
        var unicode = Gpt2ByteToUnicode();
        var vocab = new Dictionary<string, int>();
        foreach (var c in unicode.Order) vocab[c.ToString()] = vocab.Count;
        // Merge ranks: "h e" first, so "the" is t + he (a left-to-right greedy would take "t h").
        string[] merges = ["h e", "t h", "Ġ t", "Ġt he", "1 2"];
        foreach (var m in merges) vocab[m.Replace(" ", "", StringComparison.Ordinal)] = vocab.Count; // he 256, th 257, Ġt 258, Ġthe 259, 12 260
        int Id(char c) => vocab[c.ToString()];

        var plain = Dir("bl-hand");
        File.WriteAllText(Path.Combine(plain, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllLines(Path.Combine(plain, "merges.txt"), merges.Prepend("#version: 0.2"));
        var tok = TextTokenizer.Load(plain);

        Assert.Equal(83, Id('t')); // GPT-2's id for "t"
        Assert.Equal(220, Id('Ġ')); // and for "Ġ" (space)
        // "the" → t,he ; " thethat" → Ġ,t,he,t,h,a,t → Ġ,t,he,th,a,t → Ġt,… → Ġthe,th,a,t ; " !" → Ġ,!.
        int[] expected = [Id('t'), 256, 259, 257, Id('a'), Id('t'), Id('Ġ'), Id('!')];
        Assert.Equal(expected, tok.Encode("the thethat !"));
        Assert.Equal([260, Id('3')], tok.Encode("123")); // GPT-2 pattern: "123" is one pre-token
        Assert.Equal("the thethat !", tok.Decode(expected));

        // The same model as tokenizer.json (merges as pairs, Qwen2 Split regex, special token only in added_tokens).
        var json = Dir("bl-hand-json");
        var tokenizerJson = new Dictionary<string, object?>
        {
            ["added_tokens"] = new[] { new { id = 261, content = "<|endoftext|>", special = true } },
            ["pre_tokenizer"] = new
            {
                type = "Sequence",
                pretokenizers = new object[]
                {
                    new { type = "Split", pattern = new { Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" } },
                    new { type = "ByteLevel", add_prefix_space = false, use_regex = false },
                },
            },
            ["decoder"] = new { type = "ByteLevel" },
            ["model"] = new { type = "BPE", vocab, merges = merges.Select(m => m.Split(' ')).ToArray() },
        };
        File.WriteAllText(Path.Combine(json, "tokenizer.json"), JsonSerializer.Serialize(tokenizerJson));
        var fromJson = TextTokenizer.Load(json);
        Assert.Equal(262, fromJson.VocabSize);
        Assert.Equal([261], fromJson.EosIds); // GPT-2 default eos "<|endoftext|>" found among added tokens
        Assert.Equal(expected.Append(261), fromJson.Encode("the thethat !<|endoftext|>"));
        // Qwen2's Split regex puts each digit in its own pre-token, so "1 2" never applies.
        Assert.Equal([Id('1'), Id('2'), Id('3')], fromJson.Encode("123"));
    }

    [Fact]
    public void SpecialIds_FromConfigAndGenerationConfig_AreHonoured()
    {
        var sp = SentencePieceFolder();
        File.WriteAllText(Path.Combine(sp, "generation_config.json"), """{ "bos_token_id": 1, "eos_token_id": [2, 7] }""");
        File.WriteAllText(Path.Combine(sp, "config.json"), """{ "eos_token_id": 9, "pad_token_id": 0 }""");
        var tok = TextTokenizer.Load(sp);
        Assert.Equal([2, 7, 9], tok.EosIds);
        Assert.Equal(0, tok.PadId);

        var bl = ByteLevelFolder();
        File.Delete(Path.Combine(bl, "tokenizer_config.json"));
        File.WriteAllText(Path.Combine(bl, "config.json"), """{ "bos_token_id": 5, "eos_token_id": [6, 8], "pad_token_id": 4 }""");
        var bare = TextTokenizer.Load(bl);
        Assert.Equal(5, bare.BosId);
        Assert.Equal([6, 8], bare.EosIds);
        Assert.Equal(4, bare.PadId);
        Assert.False(bare.AddBosToken);
    }

    [Fact]
    public void MissingOrMalformedFiles_ThrowModelFormatExceptionNamingTheFile()
    {
        var empty = Dir("empty");
        var missing = Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(empty));
        Assert.Contains(empty, missing.Message);
        Assert.Contains("tokenizer.model", missing.Message);
        Assert.Contains("tokenizer.json", missing.Message);
        Assert.Contains("merges.txt", missing.Message);

        File.WriteAllText(Path.Combine(empty, "vocab.json"), "{}");
        Assert.Contains("merges.txt", Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(empty)).Message);

        var badJson = ByteLevelFolder("bad-json");
        File.WriteAllText(Path.Combine(badJson, "tokenizer.json"), "{ \"model\": { \"vocab\": ");
        Assert.Contains("tokenizer.json", Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(badJson)).Message);

        var badShape = ByteLevelFolder("bad-shape");
        File.WriteAllText(Path.Combine(badShape, "tokenizer.json"), """{ "model": { "type": "BPE", "vocab": [1, 2] }, "decoder": { "type": "ByteLevel" } }""");
        Assert.Contains("tokenizer.json", Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(badShape)).Message);

        var badModel = Dir("bad-model");
        File.WriteAllBytes(Path.Combine(badModel, "tokenizer.model"), Encoding.UTF8.GetBytes("this is not a protobuf"));
        Assert.Contains("tokenizer.model", Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(badModel)).Message);

        var badConfig = SentencePieceFolder();
        File.WriteAllText(Path.Combine(badConfig, "generation_config.json"), """{ "eos_token_id": "two" }""");
        Assert.Contains("generation_config.json", Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(badConfig)).Message);
    }

    [Fact]
    public void ChatTemplates_ZephyrAndNone_ExactStrings()
    {
        var tok = TextTokenizer.Load(SentencePieceFolder());
        Assert.Equal("<|user|>\nWhy is the sky blue?</s>\n<|assistant|>\n", ChatTemplates.Resolve("zephyr", tok).Prompt("Why is the sky blue?"));
        Assert.Equal("Why is the sky blue?", ChatTemplates.Resolve("none", tok).Prompt("Why is the sky blue?"));
        // The written folders have no chat_template: auto is no template, as before auto existed.
        Assert.Equal("Why is the sky blue?", ChatTemplates.Resolve("auto", tok).Prompt("Why is the sky blue?"));
    }

    [Fact]
    public void ChatTemplates_UnknownTemplate_ThrowsNamingIt()
    {
        var e = Assert.Throws<ArgumentException>(() => ChatTemplates.Resolve("chatml-v9", TextTokenizer.Load(SentencePieceFolder())));
        Assert.Contains("chatml-v9", e.Message);
    }

    /// <summary>GPT-2's bytes_to_unicode, re-derived here so the test does not trust the production table.</summary>
    private static (char[] Order, Dictionary<byte, char> Map) Gpt2ByteToUnicode()
    {
        var bs = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range(0xA1, 0xAC - 0xA1 + 1))
            .Concat(Enumerable.Range(0xAE, 0xFF - 0xAE + 1)).ToList();
        var cs = bs.ToList();
        var n = 0;
        for (var b = 0; b < 256; b++)
            if (!bs.Contains(b)) { bs.Add(b); cs.Add(256 + n++); }
        return (cs.Select(c => (char)c).ToArray(), bs.Zip(cs).ToDictionary(p => (byte)p.First, p => (char)p.Second));
    }
}
