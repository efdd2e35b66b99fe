using System.Text;
using RefAlign.Presets;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Compute.Tests;

public sealed class EncoderTokenizerTests : IDisposable
{
    private readonly DirectoryInfo root = Directory.CreateTempSubdirectory("refalign-enctok-");

    public void Dispose() => root.Delete(recursive: true);

    // ---- WordPiece (hand-made vocab.txt) ----

    private static readonly string[] BertVocab =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", // 0-4
        "hello", "world", "cafe", ",", "!",          // 5-9
        "un", "##aff", "##able", ".", "the",          // 10-14
        "##s", "a", "##b", "中", "Hello",             // 15-19
    ];

    private string BertFolder(string name, string? tokenizerConfig = null, string? config = null)
    {
        var dir = Path.Combine(root.FullName, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "vocab.txt"), string.Join('\n', BertVocab) + "\n");
        if (tokenizerConfig is not null) File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig);
        if (config is not null) File.WriteAllText(Path.Combine(dir, "config.json"), config);
        return dir;
    }

    [Theory]
    [InlineData("Hello, World!", new[] { 2, 5, 8, 6, 9, 3 })]                  // lower-case, punctuation split, CLS/SEP
    [InlineData("  Café unaffable.  ", new[] { 2, 7, 10, 11, 12, 13, 3 })]     // strip, accents, ## continuations
    [InlineData("CAFÉ Cafe\u0301", new[] { 2, 7, 7, 3 })]                      // precomposed and combining accents
    [InlineData("The hellos", new[] { 2, 14, 5, 15, 3 })]
    [InlineData("hello xyz world", new[] { 2, 5, 1, 6, 3 })]                   // unmatchable word → [UNK]
    [InlineData("hello$world", new[] { 2, 5, 1, 6, 3 })]                       // ASCII symbols are punctuation
    [InlineData("hello中world", new[] { 2, 5, 18, 6, 3 })]                     // CJK characters stand alone
    [InlineData("hello\tworld\u00A0!\u0000", new[] { 2, 5, 6, 9, 3 })]         // whitespace normalised, NUL dropped
    [InlineData("hello [MASK] world", new[] { 2, 5, 4, 6, 3 })]                // special tokens in text
    [InlineData("", new[] { 2, 3 })]
    [InlineData(" \t\n ", new[] { 2, 3 })]
    public void WordPiece_Uncased_GivesHfIds(string sentence, int[] expected)
    {
        var tok = EncoderTokenizer.Load(BertFolder("bert"));
        Assert.False(tok.IsByteLevelBpe);
        Assert.True(tok.LowerCase);
        Assert.Equal(expected, tok.EncodeForScoring(sentence));
    }

    [Fact]
    public void WordPiece_WordsOver100Chars_AreUnknown()
    {
        var tok = EncoderTokenizer.Load(BertFolder("bert"));
        var hundred = "a" + new string('b', 99);
        Assert.Equal([2, 16, .. Enumerable.Repeat(17, 99), 3], tok.EncodeForScoring(hundred));
        Assert.Equal([2, 1, 3], tok.EncodeForScoring(hundred + "b"));
    }

    [Fact]
    public void WordPiece_Specials_AndMaxLength()
    {
        var tok = EncoderTokenizer.Load(BertFolder("bert"));
        Assert.Equal((2, 3, 0, 1, 4), (tok.ClsId, tok.SepId, tok.PadId, tok.UnkId, tok.MaskId));
        Assert.Equal(new HashSet<int> { 0, 1, 2, 3, 4 }, tok.SpecialIds);
        Assert.Equal(512, tok.ModelMaxLength);
        Assert.Equal(20, tok.VocabSize);
        var fromConfig = EncoderTokenizer.Load(BertFolder("bert-cfg", config: """{"model_type": "bert", "max_position_embeddings": 64}"""));
        Assert.Equal(64, fromConfig.ModelMaxLength);
    }

    [Fact]
    public void WordPiece_TruncationKeepsSep()
    {
        var tok = EncoderTokenizer.Load(BertFolder("bert-short", """{"model_max_length": 5, "do_lower_case": true}"""));
        Assert.Equal(5, tok.ModelMaxLength);
        Assert.Equal([2, 5, 6, 5, 3], tok.EncodeForScoring("hello world hello world"));
        Assert.Equal([2, 5, 6, 3], tok.EncodeForScoring("hello world"));
    }

    [Fact]
    public void WordPiece_Cased_KeepsCaseAndAccents()
    {
        var tok = EncoderTokenizer.Load(BertFolder("bert-cased", """{"do_lower_case": false}"""));
        Assert.False(tok.LowerCase);
        Assert.Equal([2, 19, 8, 1, 3], tok.EncodeForScoring("Hello, World"));
        Assert.Equal([2, 1, 3], tok.EncodeForScoring("café"));
    }

    [Fact]
    public void WordPiece_Decode_GluesContinuations_SkipsSpecials()
    {
        var tok = EncoderTokenizer.Load(BertFolder("bert"));
        Assert.Equal("the hellos , cafe !", tok.Decode(tok.EncodeForScoring("The hellos, Café!")));
        Assert.Equal("unaffable", tok.Decode([2, 10, 11, 12, 3, 0, 0]));
    }

    // ---- RoBERTa byte-level BPE (hand-made vocab.json / merges.txt) ----

    private static readonly string[] RobertaTokens =
    [
        "<s>", "<pad>", "</s>", "<unk>", "H", "e", "l", "o", "Ġ", "He",      // 0-9
        "ll", "Hell", "Hello", "ĠH", "ĠHello", "w", "r", "d", "Ġw", "or",    // 10-19
        "ld", "Ġwor", "Ġworld", "!", "<mask>",                              // 20-24
    ];

    private static readonly string[] RobertaMerges =
        ["H e", "l l", "Ġ H", "He ll", "Hell o", "Ġ Hello", "o r", "Ġ w", "Ġw or", "l d", "Ġwor ld"];

    private string RobertaFolder(string name, string? tokenizerConfig = null, string? config = null, bool merges = true)
    {
        var dir = Path.Combine(root.FullName, name);
        Directory.CreateDirectory(dir);
        var json = new StringBuilder("{");
        for (var i = 0; i < RobertaTokens.Length; i++) json.Append(i == 0 ? "" : ",").Append($"\"{RobertaTokens[i]}\": {i}");
        File.WriteAllText(Path.Combine(dir, "vocab.json"), json.Append('}').ToString());
        if (merges) File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n" + string.Join('\n', RobertaMerges) + "\n");
        if (tokenizerConfig is not null) File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig);
        if (config is not null) File.WriteAllText(Path.Combine(dir, "config.json"), config);
        return dir;
    }

    [Theory]
    [InlineData("Hello world!", new[] { 0, 14, 22, 23, 2 })]       // prefix space: "ĠHello" (merge ranks, not left to right)
    [InlineData("  Hello world!\n", new[] { 0, 14, 22, 23, 2 })]   // stripped first
    [InlineData("Hello  world", new[] { 0, 14, 8, 22, 2 })]        // \s+(?!\S) leaves the last space to the word
    [InlineData("Hi", new[] { 0, 13, 3, 2 })]                      // a byte missing from the vocabulary → <unk>
    [InlineData("Hello <mask> world", new[] { 0, 14, 24, 22, 2 })] // <mask> takes the space before it (lstrip)
    [InlineData("", new[] { 0, 2 })]
    public void RobertaBpe_AddsPrefixSpace_GivesHfIds(string sentence, int[] expected)
    {
        var tok = EncoderTokenizer.Load(RobertaFolder("roberta"));
        Assert.True(tok.IsByteLevelBpe);
        Assert.Equal(expected, tok.EncodeForScoring(sentence));
    }

    [Fact]
    public void RobertaBpe_WithoutPrefixSpace_DiffersLikeHf()
    {
        var tok = EncoderTokenizer.Load(RobertaFolder("roberta"));
        Assert.Equal([0, 12, 22, 23, 2], tok.Encode("Hello world!"));   // "Hello", not "ĠHello"
        Assert.Equal([0, 14, 22, 23, 2], tok.Encode(" Hello world!"));
    }

    [Fact]
    public void RobertaBpe_Specials_MaxLength_Truncation_Decode()
    {
        var tok = EncoderTokenizer.Load(RobertaFolder("roberta", config: """{"model_type": "roberta", "max_position_embeddings": 514}"""));
        Assert.Equal((0, 2, 1, 3, 24), (tok.ClsId, tok.SepId, tok.PadId, tok.UnkId, tok.MaskId));
        Assert.Equal(new HashSet<int> { 0, 1, 2, 3, 24 }, tok.SpecialIds);
        Assert.Equal(512, tok.ModelMaxLength);
        Assert.Equal(" Hello world!", tok.Decode(tok.EncodeForScoring("Hello world!")));

        var shortTok = EncoderTokenizer.Load(RobertaFolder("roberta-short", """{"model_max_length": 4}"""));
        Assert.Equal([0, 14, 22, 2], shortTok.EncodeForScoring("Hello world!"));
    }

    // ---- Missing files ----

    [Fact]
    public void MissingVocabTxt_NamesFolderAndFile()
    {
        var dir = Path.Combine(root.FullName, "bert-empty");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type": "bert"}""");
        var e = Assert.Throws<ModelFormatException>(() => EncoderTokenizer.Load(dir));
        Assert.Contains("vocab.txt", e.Message, StringComparison.Ordinal);
        Assert.Contains(dir, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingMergesTxt_NamesFolderAndFile()
    {
        var dir = RobertaFolder("roberta-nomerges", merges: false);
        var e = Assert.Throws<ModelFormatException>(() => EncoderTokenizer.Load(dir));
        Assert.Contains("merges.txt is missing", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("vocab.json is", e.Message, StringComparison.Ordinal);
        Assert.Contains(dir, e.Message, StringComparison.Ordinal);

        var bare = Path.Combine(root.FullName, "roberta-empty");
        Directory.CreateDirectory(bare);
        File.WriteAllText(Path.Combine(bare, "config.json"), """{"model_type": "roberta"}""");
        var both = Assert.Throws<ModelFormatException>(() => EncoderTokenizer.Load(bare));
        Assert.Contains("vocab.json and merges.txt are missing", both.Message, StringComparison.Ordinal);
    }

    // ---- Writers ----

    /// <summary>What BERT's basic tokenizer makes of plain ASCII text: lower-cased words, punctuation apart.</summary>
    private static string BertNormalised(string s, bool lowerCase)
    {
        var spaced = new StringBuilder();
        foreach (var c in lowerCase ? s.ToLowerInvariant() : s)
            spaced.Append(char.IsAsciiLetterOrDigit(c) || char.IsWhiteSpace(c) ? c.ToString() : $" {c} ");
        return string.Join(' ', spaced.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WordPieceWriter_RoundTripsDemoCorpus_Deterministically(bool lowerCase)
    {
        var a = Path.Combine(root.FullName, $"wp-{lowerCase}-a");
        var b = Path.Combine(root.FullName, $"wp-{lowerCase}-b");
        var size = EncoderTokenizerWriter.WriteWordPiece(a, DemoCorpus.Sentences, 800, lowerCase);
        Assert.Equal(size, EncoderTokenizerWriter.WriteWordPiece(b, DemoCorpus.Sentences, 800, lowerCase));
        Assert.InRange(size, 400, 800);
        foreach (var file in new[] { "vocab.txt", "tokenizer_config.json", "special_tokens_map.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(a, file)), File.ReadAllBytes(Path.Combine(b, file)));
        Assert.Equal(EncoderTokenizerWriter.WordPieceSpecials, File.ReadLines(Path.Combine(a, "vocab.txt")).Take(5));

        var tok = EncoderTokenizer.Load(a);
        Assert.Equal(lowerCase, tok.LowerCase);
        Assert.Equal(size, tok.VocabSize);
        Assert.Equal((2, 3, 0, 512), (tok.ClsId, tok.SepId, tok.PadId, tok.ModelMaxLength));
        var pieces = 0;
        var chars = 0;
        foreach (var s in DemoCorpus.Sentences)
        {
            var ids = tok.EncodeForScoring(s);
            Assert.Equal(tok.ClsId, ids[0]);
            Assert.Equal(tok.SepId, ids[^1]);
            Assert.DoesNotContain(tok.UnkId!.Value, ids);
            Assert.Equal(BertNormalised(s, lowerCase), tok.Decode(ids));
            pieces += ids.Length - 2;
            chars += s.Length;
        }
        Assert.True(pieces * 2 < chars, $"{pieces} pieces for {chars} characters: the merges are not used");
    }

    [Fact]
    public void RobertaBpeWriter_RoundTripsDemoCorpus_Deterministically()
    {
        var a = Path.Combine(root.FullName, "rb-a");
        var b = Path.Combine(root.FullName, "rb-b");
        var size = EncoderTokenizerWriter.WriteRobertaBpe(a, DemoCorpus.Sentences, 900);
        Assert.Equal(size, EncoderTokenizerWriter.WriteRobertaBpe(b, DemoCorpus.Sentences, 900));
        Assert.InRange(size, 700, 900);
        foreach (var file in new[] { "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(a, file)), File.ReadAllBytes(Path.Combine(b, file)));
        Assert.Equal("#version: 0.2", File.ReadLines(Path.Combine(a, "merges.txt")).First());

        var tok = EncoderTokenizer.Load(a);
        Assert.Equal((0, 2, 1, 3, size - 1), (tok.ClsId, tok.SepId, tok.PadId, tok.UnkId, tok.MaskId));
        Assert.Equal(512, tok.ModelMaxLength);
        Assert.Equal(size, tok.VocabSize);
        var pieces = 0;
        var chars = 0;
        foreach (var s in DemoCorpus.Sentences)
        {
            var ids = tok.EncodeForScoring(s);
            Assert.Equal([0], ids[..1]);
            Assert.Equal(2, ids[^1]);
            Assert.DoesNotContain(3, ids);
            Assert.Equal(" " + s.Trim(), tok.Decode(ids));
            pieces += ids.Length - 2;
            chars += s.Length;
        }
        Assert.True(pieces * 2 < chars, $"{pieces} pieces for {chars} characters: the merges are not used");
        // The prefix space matters: the first word is learned in its "Ġword" form.
        Assert.NotEqual(tok.EncodeForScoring("What is the best way?")[1], tok.Encode("What is the best way?")[1]);
    }

    [Fact]
    public void RobertaBpe_MatchesMicrosoftMlBpe_OnWrittenFolder()
    {
        // An independent BPE (Microsoft.ML.Tokenizers, behind TextTokenizer) on the same vocab.json + merges.txt.
        var dir = Path.Combine(root.FullName, "rb-cross");
        EncoderTokenizerWriter.WriteRobertaBpe(dir, DemoCorpus.Sentences.Take(30), 600);
        var ours = EncoderTokenizer.Load(dir);
        var reference = TextTokenizer.Load(dir);
        foreach (var s in DemoCorpus.Sentences)
            Assert.Equal(reference.Encode(" " + s, addSpecialTokens: false), ours.EncodeForScoring(s)[1..^1]);
    }

    [Fact]
    public void Writers_RejectTooSmallVocabulary()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            EncoderTokenizerWriter.WriteWordPiece(Path.Combine(root.FullName, "wp-tiny"), DemoCorpus.Sentences, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            EncoderTokenizerWriter.WriteRobertaBpe(Path.Combine(root.FullName, "rb-tiny"), DemoCorpus.Sentences, 200));
    }
}
