using System.Text;
using RefAlign.Compute.Data;
using RefAlign.Compute.Tokenization.SentencePiece;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests.SentencePiece;

/// <summary>
/// Real SentencePiece models trained by the library's own <c>spm_train</c> (BPE and unigram; with and without
/// byte_fallback, split_digits, add_dummy_prefix, remove_extra_whitespaces; identity, NFKC, case-folding and a custom
/// rule table; user-defined and control symbols; whitespace as suffix; 500 to 3,000 pieces), plus the Llama-style model
/// our presets write, and the library's answers (<c>spm_encode --output_format=id</c>, <c>spm_decode</c>) for every
/// probe string, each tool called once per model.
/// </summary>
public sealed class SentencePieceLibrary : IAsyncLifetime
{
    public const int ProbeCount = 10_500;
    public const int RandomDecodeSequences = 3_000;

    /// <summary>Texts with HF special-token strings in them (TextTokenizer maps these to ids; the library does not).</summary>
    public static readonly string[] SpecialTokenTexts =
        ["Hello</s>", "</s>", "<s>Hello world</s>", "a<unk>b", "x </s> y", "</s></s>", " </s>", "<s> <s>", "so</s>  far", "<unk>"];

    static readonly (string Name, string Args)[] Trained =
    [
        ("bpe-llama", "--model_type=bpe --vocab_size=2000 --byte_fallback=true --split_digits=true --normalization_rule_name=identity --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true --character_coverage=0.99"),
        ("bpe-nfkc-small", "--model_type=bpe --vocab_size=500 --character_coverage=0.98"),
        ("bpe-cf-user", "--model_type=bpe --vocab_size=3000 --normalization_rule_name=nmt_nfkc_cf --user_defined_symbols=<sep>,[MASK],@@,😀😀 --control_symbols=<ctrl>,<2en> --split_digits=true --byte_fallback=true"),
        ("bpe-nodummy", "--model_type=bpe --vocab_size=1000 --normalization_rule_name=identity --add_dummy_prefix=false"),
        ("bpe-suffix", "--model_type=bpe --vocab_size=1500 --normalization_rule_name=nfkc --treat_whitespace_as_suffix=true --max_sentencepiece_length=4"),
        ("uni-default", "--model_type=unigram --vocab_size=1000"),
        ("uni-llama", "--model_type=unigram --vocab_size=2500 --normalization_rule_name=identity --byte_fallback=true --split_digits=true --remove_extra_whitespaces=false"),
        ("uni-user-cf", "--model_type=unigram --vocab_size=800 --normalization_rule_name=nmt_nfkc_cf --user_defined_symbols=<sep>,[MASK],@@,😀😀 --add_dummy_prefix=false --character_coverage=0.98"),
        ("uni-rules", "--model_type=unigram --vocab_size=600 --normalization_rule_tsv=rules.tsv --denormalization_rule_tsv=denorm.tsv --unk_surface=<?> --character_coverage=0.98"),
        ("uni-suffix", "--model_type=unigram --vocab_size=3000 --normalization_rule_name=nfkc_cf --treat_whitespace_as_suffix=true --byte_fallback=true --allow_whitespace_only_pieces=true"),
    ];

    /// <summary>Every model of the comparison: the trained ones and our presets' writer.</summary>
    public static IEnumerable<object[]> ModelNames => Trained.Select(t => new object[] { t.Name }).Append(["preset-llama"]);

    readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("refalign-spm-");
    readonly Dictionary<string, Answers> _answers = [];

    public IReadOnlyList<string> Probes { get; } = SentencePieceTexts.Probes(ProbeCount);

    /// <summary>The library's ids per probe, its decoded text per id line, and the ids of the special-token texts' parts.</summary>
    public sealed record Answers(string Folder, IReadOnlyList<int[]> Ids, IReadOnlyList<int[]> DecodeInputs, IReadOnlyList<string> Decoded,
        IReadOnlyList<int[]> SpecialPartIds);

    public Answers For(string model) => _answers[model];

    /// <summary>Each special-token text cut into (is special, text) parts, in order.</summary>
    public static IEnumerable<(bool Special, string Text)> Parts(string text)
    {
        var parts = System.Text.RegularExpressions.Regex.Split(text, "(</s>|<s>|<unk>)");
        return parts.Where(p => p.Length > 0).Select(p => (p is "</s>" or "<s>" or "<unk>", p));
    }

    public async Task InitializeAsync()
    {
        var dir = _root.FullName;
        await File.WriteAllBytesAsync(Path.Combine(dir, "corpus.txt"), Lines(SentencePieceTexts.Corpus(6_000)));
        await File.WriteAllBytesAsync(Path.Combine(dir, "probes.txt"), Lines(Probes));
        await File.WriteAllBytesAsync(Path.Combine(dir, "parts.txt"), Lines(SpecialTokenTexts.SelectMany(Parts).Where(p => !p.Special).Select(p => p.Text)));
        // A custom rule table: letters, a two-character rule, the ideographic space, a full-width digit, and a
        // decomposition; the denormalizer maps one result back on decode.
        await File.WriteAllTextAsync(Path.Combine(dir, "rules.tsv"), "41\t61\n42 43\t78 79\n3000\t20\nFF10\t30\nE9\t65 301\n");
        await File.WriteAllTextAsync(Path.Combine(dir, "denorm.tsv"), "78 79\t42 43\n");
        var preset = Directory.CreateDirectory(Path.Combine(dir, "preset-llama")).FullName;
        TokenizerWriter.WriteSentencePiece(preset, DemoCorpus.Sentences, 1000);
        File.Copy(Path.Combine(preset, "tokenizer.model"), Path.Combine(dir, "preset-llama.model"));

        await Task.WhenAll(Trained.Select(t => ExternalTool.RunCheckedAsync("spm_train",
            [$"--input=corpus.txt", $"--model_prefix={t.Name}", "--minloglevel=2", "--hard_vocab_limit=false", "--num_threads=1",
             .. t.Args.Split(' ')], dir)));
        var names = ModelNames.Select(n => (string)n[0]).ToList();
        var answers = await Task.WhenAll(names.Select(name => AnswersAsync(dir, name)));
        for (var i = 0; i < names.Count; i++) _answers[names[i]] = answers[i];
    }

    async Task<Answers> AnswersAsync(string dir, string name)
    {
        var model = Path.Combine(dir, $"{name}.model");
        var ids = IdLines(await ExternalTool.RunCheckedAsync("spm_encode", [$"--model={model}", "--output_format=id", "probes.txt"], dir));
        if (ids.Count != Probes.Count) throw new InvalidOperationException($"spm_encode gave {ids.Count} lines for {Probes.Count} probes ({name}).");
        var parts = IdLines(await ExternalTool.RunCheckedAsync("spm_encode", [$"--model={model}", "--output_format=id", "parts.txt"], dir));

        // Decoding: the library's own encodings, then random id sequences over the whole vocabulary (control, unknown,
        // byte pieces and malformed UTF-8 included). spm_decode reads an empty line as id 0, so empty sequences are
        // left out; a line break byte would split its output line, so <0x0A> is left out of the random draws.
        var sp = SentencePieceModel.Load(model);
        var usable = Enumerable.Range(0, sp.Pieces.Count).Where(i => sp.Pieces[i].Text != "<0x0A>").ToArray();
        var rng = new Random(5);
        var inputs = ids.Where(x => x.Length > 0).ToList();
        for (var i = 0; i < RandomDecodeSequences; i++)
            inputs.Add([.. Enumerable.Range(0, rng.Next(1, 40)).Select(_ => usable[rng.Next(usable.Length)])]);
        var decodeFile = Path.Combine(dir, $"{name}.decode-ids");
        await File.WriteAllTextAsync(decodeFile, string.Concat(inputs.Select(x => string.Join(' ', x) + "\n")));
        var decoded = Encoding.UTF8.GetString(await ExternalTool.RunCheckedAsync("spm_decode", [$"--model={model}", "--input_format=id", decodeFile], dir))
            .Split('\n');
        if (decoded.Length != inputs.Count + 1) throw new InvalidOperationException($"spm_decode gave {decoded.Length - 1} lines for {inputs.Count} inputs ({name}).");

        var folder = Directory.CreateDirectory(Path.Combine(dir, $"{name}-folder")).FullName;
        File.Copy(model, Path.Combine(folder, "tokenizer.model"));
        return new Answers(folder, ids, inputs, decoded[..^1], parts);
    }

    static byte[] Lines(IEnumerable<string> lines) => Encoding.UTF8.GetBytes(string.Concat(lines.Select(l => l + "\n")));

    static List<int[]> IdLines(byte[] stdout)
    {
        var lines = Encoding.UTF8.GetString(stdout).Split('\n');
        return [.. lines[..^1].Select(l => l.Length == 0 ? [] : l.Split(' ').Select(int.Parse).ToArray())];
    }

    public Task DisposeAsync()
    {
        _root.Delete(recursive: true);
        return Task.CompletedTask;
    }
}
