using RefAlign.Presets;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Compute.Tests;

public sealed class TokenizerWriterTests : IDisposable
{
    private readonly DirectoryInfo root = Directory.CreateTempSubdirectory("refalign-tokw-");

    public void Dispose() => root.Delete(recursive: true);

    [Fact]
    public void Writers_AreDeterministic()
    {
        var sizes = new List<int>();
        foreach (var run in new[] { "a", "b" })
        {
            sizes.Add(TokenizerWriter.WriteSentencePiece(Path.Combine(root.FullName, "sp-" + run), DemoCorpus.Sentences, 2000));
            sizes.Add(TokenizerWriter.WriteByteLevelBpe(Path.Combine(root.FullName, "bl-" + run), DemoCorpus.Sentences, 2000));
        }
        Assert.Equal(sizes[0], sizes[2]);
        Assert.Equal(sizes[1], sizes[3]);
        foreach (var (kind, file) in new[] { ("sp", "tokenizer.model"), ("bl", "tokenizer.json"), ("bl", "merges.txt") })
            Assert.Equal(File.ReadAllBytes(Path.Combine(root.FullName, $"{kind}-a", file)),
                         File.ReadAllBytes(Path.Combine(root.FullName, $"{kind}-b", file)));
    }

    [Fact]
    public void Writers_RespectVocabularySize()
    {
        var sp = TokenizerWriter.WriteSentencePiece(Path.Combine(root.FullName, "sp"), DemoCorpus.Sentences, 600);
        var bl = TokenizerWriter.WriteByteLevelBpe(Path.Combine(root.FullName, "bl"), DemoCorpus.Sentences, 600);
        Assert.InRange(sp, 500, 600);
        Assert.InRange(bl, 500, 600);
        Assert.Equal(sp, TextTokenizer.Load(Path.Combine(root.FullName, "sp")).VocabSize);
        Assert.Equal(bl, TextTokenizer.Load(Path.Combine(root.FullName, "bl")).VocabSize);
    }

    [Fact]
    public void DemoCorpus_HasVariedSentences()
    {
        Assert.InRange(DemoCorpus.Sentences.Count, 150, 300);
        Assert.Equal(DemoCorpus.Sentences.Count, DemoCorpus.Sentences.Distinct().Count());
        Assert.Contains(DemoCorpus.Sentences, s => s.StartsWith("I cannot", StringComparison.Ordinal));
        Assert.Contains(DemoCorpus.Sentences, s => s.EndsWith('?'));
    }
}
