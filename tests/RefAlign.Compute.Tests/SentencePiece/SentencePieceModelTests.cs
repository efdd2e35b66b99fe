using RefAlign.Compute.Data;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Tokenization.SentencePiece;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests.SentencePiece;

/// <summary>
/// Hand-made SentencePiece models: the library's tie rules on small vocabularies worked out by hand, and the models we
/// refuse rather than tokenize approximately.
/// </summary>
public sealed class SentencePieceModelTests : IDisposable
{
    readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("refalign-spm-unit-");

    public void Dispose() => _root.Delete(recursive: true);

    static readonly SentencePieceEntry Unk = new("<unk>", 0, PieceType.Unknown);

    string Write(string name, IReadOnlyList<SentencePieceEntry> pieces, SentencePieceModelOptions? options = null)
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root.FullName, name)).FullName;
        SentencePieceModelWriter.Write(Path.Combine(folder, "tokenizer.model"), pieces, options);
        return folder;
    }

    static SentencePieceModel Load(string folder) => SentencePieceModel.Load(Path.Combine(folder, "tokenizer.model"));

    static string[] Pieces(SentencePieceModel m, string text) => [.. m.EncodeToPieces(text).Select(p => p.Piece)];

    [Fact]
    public void Bpe_merges_equal_scores_leftmost_first_so_a_run_starts_with_its_longest_piece()
    {
        // "aa" outranks "aaaa": every "aa" pair is merged left to right, then the "aaaa" pairs, leftmost first.
        var m = Load(Write("run", [Unk, new("a", -3, PieceType.Normal), new("aa", -1, PieceType.Normal), new("aaaa", -2, PieceType.Normal)],
            new SentencePieceModelOptions { ByteFallback = false, AddDummyPrefix = false }));
        Assert.Equal(["aaaa", "a"], Pieces(m, "aaaaa"));
        Assert.Equal(["aaaa", "aa"], Pieces(m, "aaaaaa"));
        Assert.Equal(["aaaa", "aa", "a"], Pieces(m, "aaaaaaa"));
        Assert.Equal(["aaaa", "aaaa", "a"], Pieces(m, "aaaaaaaaa"));
    }

    [Fact]
    public void Unigram_keeps_the_first_path_found_when_two_score_the_same()
    {
        // "ab" alone and "a" + "b" both score −1: the single piece is found first (ending at the same byte) and stays.
        var m = Load(Write("tie", [Unk, new("ab", -1, PieceType.Normal), new("a", -0.5f, PieceType.Normal), new("b", -0.5f, PieceType.Normal),
            new("c", -0.75f, PieceType.Normal), new("bc", -1.5f, PieceType.Normal)],
            new SentencePieceModelOptions { ModelType = SentencePieceModelType.Unigram, ByteFallback = false, AddDummyPrefix = false }));
        Assert.Equal(["ab"], Pieces(m, "ab"));
        // ab|c (−1.75) beats a|bc (−2.0); a|b|c scores −1.75 too but is never a candidate: "ab" already holds the best path to "b".
        Assert.Equal(["ab", "c"], Pieces(m, "abc"));
        // An unknown character costs min_score − 10; a run of them is one unknown piece.
        Assert.Equal(["a", "zz", "b"], Pieces(m, "azzb"));
        Assert.Equal([2, 0, 3], m.Encode("azzb"));
    }

    [Fact]
    public void A_model_whose_normalization_rules_cannot_be_read_is_refused_naming_its_normalizer()
    {
        var folder = Write("broken-rules", [Unk, new("a", -1, PieceType.Normal)], new SentencePieceModelOptions
        {
            ByteFallback = false, NormalizerName = "nmt_nfkc_cf", PrecompiledCharsMap = [200, 0, 0, 0, 1, 2, 3, 4],
        });
        var e = Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(folder));
        Assert.Contains("nmt_nfkc_cf", e.Message);
        Assert.Contains("precompiled_charsmap", e.Message);
        Assert.Contains("tokenizer.model", e.Message);
    }

    [Theory]
    [InlineData(SentencePieceModelType.Word, "WORD")]
    [InlineData(SentencePieceModelType.Char, "CHAR")]
    public void Word_and_char_models_are_refused_by_name(SentencePieceModelType type, string name)
    {
        var folder = Write($"type-{name}", [Unk, new("a", -1, PieceType.Normal)], new SentencePieceModelOptions { ModelType = type, ByteFallback = false });
        var e = Assert.Throws<ModelFormatException>(() => TextTokenizer.Load(folder));
        Assert.Contains($"model_type {name}", e.Message);
    }

    [Fact]
    public void Self_test_samples_in_the_model_are_checked_when_it_loads()
    {
        SentencePieceEntry[] pieces = [Unk, new("▁", -3, PieceType.Normal), new("a", -2, PieceType.Normal), new("▁a", -1, PieceType.Normal)];
        var good = Write("self-good", pieces, new SentencePieceModelOptions { ByteFallback = false, SelfTests = [("a a", "▁a ▁a")] });
        Assert.Equal([3, 3], Load(good).Encode("a a"));
        var bad = Write("self-bad", pieces, new SentencePieceModelOptions { ByteFallback = false, SelfTests = [("a a", "▁ a ▁ a")] });
        var e = Assert.Throws<ModelFormatException>(() => Load(bad));
        Assert.Contains("self_test_data", e.Message);
        Assert.Contains("'▁a ▁a'", e.Message);
    }

    [Fact]
    public void Byte_pieces_need_byte_fallback_and_byte_fallback_needs_all_256()
    {
        var stray = Write("stray-byte", [Unk, new("<0x41>", 0, PieceType.Byte)], new SentencePieceModelOptions { ByteFallback = false });
        Assert.Contains("byte_fallback is false", Assert.Throws<ModelFormatException>(() => Load(stray)).Message);
        var missing = Write("missing-bytes", [Unk, new("<0x41>", 0, PieceType.Byte)]);
        Assert.Contains("1 of the 256 byte pieces", Assert.Throws<ModelFormatException>(() => Load(missing)).Message);
    }

    [Fact]
    public void A_file_that_is_not_a_model_is_refused_with_its_path()
    {
        var path = Path.Combine(_root.FullName, "garbage.model");
        File.WriteAllBytes(path, [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 1, 2]);
        var e = Assert.Throws<ModelFormatException>(() => SentencePieceModel.Load(path));
        Assert.Contains(path, e.Message);
        var empty = Path.Combine(_root.FullName, "empty.model");
        File.WriteAllBytes(empty, []);
        Assert.Contains("no pieces", Assert.Throws<ModelFormatException>(() => SentencePieceModel.Load(empty)).Message);
    }

    [Fact]
    public void A_skipped_special_token_does_not_split_the_decoded_text()
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root.FullName, "preset")).FullName;
        TokenizerWriter.WriteSentencePiece(folder, DemoCorpus.Sentences, 1000);
        var tok = TextTokenizer.Load(folder);
        var ids = tok.Encode("the cat sat", addSpecialTokens: false).ToList();
        var eos = tok.EosIds[0];
        Assert.Equal("the cat sat", tok.Decode([tok.BosId!.Value, .. ids[..1], eos, .. ids[1..], eos]));
        Assert.Equal("<s>the cat sat</s>", tok.Decode([tok.BosId!.Value, .. ids, eos], skipSpecialTokens: false));
    }
}
