using System.Collections.Concurrent;
using System.Text.Json;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Tokenization.SentencePiece;

namespace RefAlign.Compute.Tests.SentencePiece;

/// <summary>
/// Our SentencePiece reading against the library itself (Debian's sentencepiece 0.1.97: spm_train, spm_encode,
/// spm_decode): for each model, every probe's ids through <see cref="TextTokenizer"/> (as training sees them) and every
/// decoding must be equal. A mismatch lists the first differing probes with both piece sequences.
/// </summary>
public sealed class SentencePieceLibraryTests(SentencePieceLibrary library) : IClassFixture<SentencePieceLibrary>
{
    [Theory]
    [MemberData(nameof(SentencePieceLibrary.ModelNames), MemberType = typeof(SentencePieceLibrary))]
    public void Encoding_equals_spm_encode_for_every_probe(string model)
    {
        var answers = library.For(model);
        var tokenizer = TextTokenizer.Load(answers.Folder);
        var sp = SentencePieceModel.Load(Path.Combine(answers.Folder, "tokenizer.model"));
        Assert.True(library.Probes.Count >= 10_000);
        var mismatches = new ConcurrentBag<int>();
        Parallel.For(0, library.Probes.Count, i =>
        {
            if (!tokenizer.Encode(library.Probes[i], addSpecialTokens: false).SequenceEqual(answers.Ids[i])) mismatches.Add(i);
        });
        Assert.True(mismatches.IsEmpty, $"{model}: {mismatches.Count} of {library.Probes.Count} probes differ from spm_encode:\n" +
            string.Join("\n", mismatches.Order().Take(5).Select(i => Describe(sp, library.Probes[i], answers.Ids[i]))));
    }

    [Theory]
    [MemberData(nameof(SentencePieceLibrary.ModelNames), MemberType = typeof(SentencePieceLibrary))]
    public void Decoding_equals_spm_decode(string model)
    {
        var answers = library.For(model);
        var sp = SentencePieceModel.Load(Path.Combine(answers.Folder, "tokenizer.model"));
        var tokenizer = TextTokenizer.Load(answers.Folder);
        var special = new HashSet<int>(new[] { tokenizer.BosId, tokenizer.UnkId }.OfType<int>().Concat(tokenizer.EosIds));
        var mismatches = new ConcurrentBag<string>();
        Parallel.For(0, answers.DecodeInputs.Count, i =>
        {
            var ids = answers.DecodeInputs[i];
            var ours = sp.Decode(ids);
            if (ours != answers.Decoded[i]) mismatches.Add($"[{string.Join(' ', ids.Take(40))}]: ours {Json(ours)}, spm_decode {Json(answers.Decoded[i])}");
            // The tokenizer decodes as the library wherever no HF special token (BOS, EOS, unknown) is involved.
            else if (!ids.Any(special.Contains) && tokenizer.Decode(ids) != ours) mismatches.Add($"[{string.Join(' ', ids.Take(40))}]: TextTokenizer {Json(tokenizer.Decode(ids))}");
        });
        Assert.True(answers.DecodeInputs.Count >= 10_000);
        Assert.True(mismatches.IsEmpty, $"{model}: {mismatches.Count} of {answers.DecodeInputs.Count} decodings differ:\n" + string.Join("\n", mismatches.Take(5)));
        Assert.Equal("", sp.Decode([]));
    }

    [Theory]
    [MemberData(nameof(SentencePieceLibrary.ModelNames), MemberType = typeof(SentencePieceLibrary))]
    public void Special_token_strings_in_text_map_to_their_ids_and_the_rest_is_encoded_as_the_library_does(string model)
    {
        var answers = library.For(model);
        var tokenizer = TextTokenizer.Load(answers.Folder);
        var sp = SentencePieceModel.Load(Path.Combine(answers.Folder, "tokenizer.model"));
        var next = 0;
        foreach (var text in SentencePieceLibrary.SpecialTokenTexts)
        {
            var expected = new List<int>();
            foreach (var (isSpecial, part) in SentencePieceLibrary.Parts(text))
                expected.AddRange(isSpecial ? [sp.Find(part)!.Value] : answers.SpecialPartIds[next++]);
            Assert.Equal(expected, tokenizer.Encode(text, addSpecialTokens: false));
        }
        Assert.Equal(answers.SpecialPartIds.Count, next);
    }

    static string Describe(SentencePieceModel sp, string probe, int[] expected) =>
        $"  {Json(probe.Length > 120 ? probe[..120] + "…" : probe)}\n    ours: {Pieces(sp, sp.Encode(probe))}\n    spm:  {Pieces(sp, expected)}";

    static string Pieces(SentencePieceModel sp, IEnumerable<int> ids) => string.Join(' ', ids.Take(30).Select(id => sp.Pieces[id].Text));

    static string Json(string s) => JsonSerializer.Serialize(s);
}
