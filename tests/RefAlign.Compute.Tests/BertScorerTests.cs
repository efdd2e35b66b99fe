using RefAlign.Presets;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Tests.Oracle;
using RefAlign.Compute.Tokenization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>The tiny encoder presets, written once for all BERTScore tests (random weights, demo-trained tokenizers).</summary>
public sealed class BertScorerPresets : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory("refalign-bertscore-").FullName;

    public BertScorerPresets()
    {
        foreach (var p in new[] { "tiny-bert", "tiny-roberta", "tiny-bart" }) EncoderPresets.Initialize(Folder(p), p, seed: 5);
    }

    public string Folder(string preset) => Path.Combine(Root, preset);

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

/// <summary>
/// BertScorer against bert_score's definitions (docs/algorithms.md §4): a hand-computed case, an independent double-precision oracle,
/// idf, multi-reference, baseline rescaling, padding/batch/order invariance, empty input and special tokens.
/// </summary>
public sealed class BertScorerTests(BertScorerPresets presets) : IClassFixture<BertScorerPresets>
{
    public static TheoryData<string> Presets => ["tiny-bert", "tiny-roberta", "tiny-bart"];

    BertScorer Load(string preset, int? layers = null) => BertScorer.FromPretrained(presets.Folder(preset), layers);

    static ReferenceBertScore Oracle(BertScorer scorer, TransformerEncoder encoder, bool weightSpecials = false) =>
        new(encoder, scorer.Tokenizer, scorer.Layers) { WeightSpecialTokens = weightSpecials };

    /// <summary>20 candidate/reference pairs of demo text: rejected answers, other items' answers and prompts against a
    /// reference answer, plus a few neighbouring DemoCorpus sentences; no pair is a sentence against itself.</summary>
    internal static (string[] Candidates, string[] References) DemoPairs()
    {
        var prefs = DemoData.Preferences;
        var refs = DemoData.References;
        var cands = new List<string>();
        var rs = new List<string>();
        for (var i = 0; i < 16; i++)
        {
            // (Chosen equals the reference answer in the demo data, so it is paired with a neighbour's reference.)
            var k = i * (prefs.Count - 1) / 16;
            cands.Add((i % 3) switch { 0 => prefs[k].Rejected, 1 => prefs[k].Chosen, _ => prefs[k].Prompt });
            rs.Add(refs[i % 3 == 1 ? k + 1 : k].Reference);
        }
        for (var i = 0; i < 4; i++)
        {
            cands.Add(DemoCorpus.Sentences[3 * i]);
            rs.Add(DemoCorpus.Sentences[3 * i + 1]);
        }
        return ([.. cands], [.. rs]);
    }

    static void AssertClose(BertScoreResult expected, BertScoreResult actual, double tol, string what)
    {
        Assert.True(Math.Abs(expected.Precision - actual.Precision) <= tol, $"{what}: P expected {expected.Precision} got {actual.Precision}");
        Assert.True(Math.Abs(expected.Recall - actual.Recall) <= tol, $"{what}: R expected {expected.Recall} got {actual.Recall}");
        Assert.True(Math.Abs(expected.F1 - actual.F1) <= tol, $"{what}: F expected {expected.F1} got {actual.F1}");
    }

    // ---- sanity ----

    [Theory]
    [MemberData(nameof(Presets))]
    public void SentenceAgainstItselfScoresOne(string preset)
    {
        using var scorer = Load(preset);
        string[] sentences =
        [
            "The cat sat on the mat.", DemoCorpus.Sentences[0], DemoData.References[3].Reference,
            "  Leading and trailing spaces are stripped.  ", "Hi", "Numbers 1, 2 and 3; punctuation!?",
        ];
        foreach (var idf in new[] { false, true })
        {
            var scores = scorer.Score(sentences, sentences, new BertScoreOptions { Idf = idf });
            for (var i = 0; i < sentences.Length; i++)
                AssertClose(new(1, 1, 1), scores[i], 1e-6, $"{preset} idf={idf} '{sentences[i]}'");
        }
    }

    // ---- hand-built case ----

    // Vocabulary of the hand-built BertModel; the line number is the id.
    static readonly string[] HandVocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "runs", "a", "dog", "ran"];

    static readonly double S2 = Math.Sqrt(2);

    // Word embeddings: every vector has mean 0 and (population) variance 1, so the embedding LayerNorm (weight 1,
    // bias 0, eps 1e-12) leaves it unchanged; every vector has norm 2, so cosine = dot / 4.
    static readonly double[][] HandVectors =
    [
        [-1, 1, 1, -1],      // [PAD]
        [1, -1, -1, 1],      // [UNK]
        [1, 1, -1, -1],      // [CLS]
        [1, -1, 1, -1],      // [SEP]
        [-1, -1, 1, 1],      // [MASK]
        [S2, 0, -S2, 0],     // cat
        [0, S2, 0, -S2],     // runs
        [S2, 0, 0, -S2],     // a
        [0, 0, S2, -S2],     // dog
        [-S2, S2, 0, 0],     // ran
    ];

    /// <summary>A 1-layer BertModel (hidden 4) whose layer-0 output (embeddings after LayerNorm) is exactly <see cref="HandVectors"/>.</summary>
    static string WriteHandModel(string root)
    {
        var dir = Path.Combine(root, "hand-bert");
        var cfg = new EncoderConfig
        {
            Architecture = "BertModel", ModelType = "bert", VocabSize = HandVocab.Length, HiddenSize = 4, NumHiddenLayers = 1,
            NumAttentionHeads = 1, IntermediateSize = 8, MaxPositionEmbeddings = 16, TypeVocabSize = 2, LayerNormEps = 1e-12,
            PadTokenId = 0, InitializerRange = 0.5,
        };
        using (var enc = new TransformerEncoder(cfg))
        {
            enc.InitializeWeights(5); // LayerNorms 1/0; the layer itself is random and must not be used at layers = 0
            using (no_grad())
                foreach (var (name, p) in enc.named_parameters())
                {
                    if (name == "embeddings.word_embeddings.weight")
                    {
                        using var w = tensor(HandVectors.SelectMany(v => v.Select(x => (float)x)).ToArray(), [HandVocab.Length, 4]);
                        p.copy_(w);
                    }
                    else if (name is "embeddings.position_embeddings.weight" or "embeddings.token_type_embeddings.weight") p.zero_();
                }
            enc.SavePretrained(dir);
        }
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), HandVocab);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}""");
        return dir;
    }

    [Fact]
    public void HandBuiltEmbeddingsGiveThePaperValues()
    {
        var dir = WriteHandModel(presets.Root);
        using var scorer = BertScorer.FromPretrained(dir, layers: 0);
        Assert.Equal([2, 5, 6, 3], scorer.Tokenizer.EncodeForScoring("cat runs"));
        Assert.Equal([2, 7, 8, 9, 3], scorer.Tokenizer.EncodeForScoring(" A dog ran "));

        // cos = dot/4. Rows: candidate "cat runs" = CLS cat runs SEP; columns: reference "a dog ran" = CLS a dog ran SEP.
        //            CLS      a       dog      ran      SEP
        //   CLS   [  1       √2/2     0        0        0   ]   CLS·a = (√2+√2)/4
        //   cat   [ √2/2     1/2     -1/2     -1/2      0   ]   cat·CLS = (√2+√2)/4, cat·a = 2/4, cat·dog = −2/4
        //   runs  [ √2/2     1/2      1/2      1/2      0   ]   runs·CLS = (√2+√2)/4, runs·dog = 2/4
        //   SEP   [  0       √2/2     √2/2    −√2/2     1   ]   SEP·dog = (√2+√2)/4, SEP·ran = (−√2−√2)/4
        // Special rows/columns stay in the matrix (they win maxima below) but weigh 0.
        // P: row maxima of cat, runs = √2/2 (both from the reference's CLS column) → P = √2/2 = 0.70710678
        // R: column maxima of a = √2/2 (CLS/SEP row), dog = √2/2 (SEP row), ran = 1/2 → R = (2√2 + 1)/6 = 0.63807119
        // F = 2PR/(P+R) = (4 + √2)/(5√2 + 1) = 0.67081750
        // (Dropping the special rows/columns would give P = R = 1/2; weighting CLS/SEP 1 would give P = 0.8536, R = 0.7828.)
        double p = S2 / 2, r = (2 * S2 + 1) / 6, f = (4 + S2) / (5 * S2 + 1);
        double[,] paper =
        {
            { 1, S2 / 2, 0, 0, 0 },
            { S2 / 2, 0.5, -0.5, -0.5, 0 },
            { S2 / 2, 0.5, 0.5, 0.5, 0 },
            { 0, S2 / 2, S2 / 2, -S2 / 2, 1 },
        };
        using var encoder = TransformerEncoder.FromPretrained(dir);
        var oracle = new ReferenceBertScore(encoder, scorer.Tokenizer, 0);
        var (_, hv) = oracle.Embed("cat runs");
        var (_, rv) = oracle.Embed("a dog ran");
        for (var i = 0; i < 4; i++)
            for (var j = 0; j < 5; j++)
                Assert.True(Math.Abs(paper[i, j] - hv[i].Zip(rv[j], (x, y) => x * y).Sum()) < 1e-6, $"cos[{i},{j}]");

        // Forward and swapped in one batch (different lengths, so one of them is padded), and each alone.
        var both = scorer.Score(["cat runs", "a dog ran"], ["a dog ran", "cat runs"]);
        AssertClose(new(p, r, f), both[0], 1e-5, "cat runs | a dog ran");
        AssertClose(new(r, p, f), both[1], 1e-5, "a dog ran | cat runs");
        var alone = scorer.Score(["cat runs"], ["a dog ran"], new BertScoreOptions { BatchSize = 1 });
        AssertClose(new(p, r, f), alone[0], 1e-5, "alone");
    }

    // ---- oracle ----

    [Theory]
    [InlineData("tiny-bert", false)]
    [InlineData("tiny-bert", true)]
    [InlineData("tiny-roberta", false)]
    [InlineData("tiny-roberta", true)]
    [InlineData("tiny-bart", false)]
    [InlineData("tiny-bart", true)]
    public void MatchesDoublePrecisionOracle(string preset, bool idf)
    {
        using var scorer = Load(preset);
        using var encoder = TransformerEncoder.FromPretrained(presets.Folder(preset));
        var oracle = Oracle(scorer, encoder);
        var (cands, refs) = DemoPairs();
        var ours = scorer.Score(cands, refs, new BertScoreOptions { Idf = idf, BatchSize = 7 });
        var expected = oracle.Score(cands, refs, idf);
        for (var i = 0; i < cands.Length; i++) AssertClose(expected[i], ours[i], 1e-5, $"{preset} idf={idf} pair {i}");
        // The pairs really differ from one another (a constant score would prove little).
        Assert.True(ours.Max(s => s.F1) - ours.Min(s => s.F1) > 1e-3);
    }

    [Fact]
    public void OracleAgreesAtEveryLayer()
    {
        using var encoder = TransformerEncoder.FromPretrained(presets.Folder("tiny-roberta"));
        var (cands, refs) = DemoPairs();
        var byLayer = new List<double>();
        for (var l = 0; l <= encoder.Config.NumHiddenLayers; l++)
        {
            using var scorer = Load("tiny-roberta", l);
            var ours = scorer.Score(cands[..6], refs[..6]);
            var expected = new ReferenceBertScore(encoder, scorer.Tokenizer, l).Score(cands[..6], refs[..6], idf: false);
            for (var i = 0; i < 6; i++) AssertClose(expected[i], ours[i], 1e-5, $"layer {l} pair {i}");
            byLayer.Add(ours[0].F1);
        }
        Assert.True(byLayer.Distinct().Count() == byLayer.Count, "the layer did not change the score: " + string.Join(", ", byLayer));
    }

    // ---- idf ----

    [Fact]
    public void IdfValuesOnSmallCorpus()
    {
        const int cls = 101, sep = 102;
        // N = 3 references. df: 5 → 2, 6 → 1, 7 → 1 (twice in one sentence counts once), 8 → 1; CLS/SEP → 3.
        int[][] refs = [[cls, 5, 6, sep], [cls, 5, 7, 7, sep], [cls, 8, sep]];
        var w = IdfWeights.FromReferences(refs, cls, sep);
        Assert.Equal(Math.Log(4.0 / 3.0), w[5], 12); // log((3+1)/(2+1)) = 0.287682
        Assert.Equal(Math.Log(2.0), w[6], 12);       // log((3+1)/(1+1)) = 0.693147
        Assert.Equal(Math.Log(2.0), w[7], 12);
        Assert.Equal(Math.Log(2.0), w[8], 12);
        Assert.Equal(Math.Log(4.0), w[9], 12);       // unseen: log(N+1) = 1.386294
        Assert.Equal(0.0, w[cls]);
        Assert.Equal(0.0, w[sep]);

        // CLS/SEP weigh 0 by rule, not only because they occur in every reference (where idf would be log 1 = 0):
        // here they never occur, so without the rule they would get the unseen weight log(3).
        var noSpecials = IdfWeights.FromReferences([[5, 6], [6]], cls, sep);
        Assert.Equal(0.0, noSpecials[cls]);
        Assert.Equal(0.0, noSpecials[sep]);
        Assert.Equal(Math.Log(3.0 / 2.0), noSpecials[5], 12);
        Assert.Equal(Math.Log(3.0), noSpecials[42], 12);

        var uniform = IdfWeights.Uniform(cls, sep);
        Assert.Equal(1.0, uniform[5]);
        Assert.Equal(1.0, uniform[12345]);
        Assert.Equal(0.0, uniform[cls]);
        Assert.Equal(0.0, uniform[sep]);
    }

    [Fact]
    public void IdfChangesScoresAndCountsEveryReferenceOfEveryCandidate()
    {
        using var scorer = Load("tiny-bert");
        using var encoder = TransformerEncoder.FromPretrained(presets.Folder("tiny-bert"));
        var oracle = Oracle(scorer, encoder);
        var (cands, refs) = DemoPairs();
        cands = cands[..5];
        var r1 = refs[..5];
        var r2 = refs[5..10];
        IReadOnlyList<IReadOnlyList<string>> multi = [.. Enumerable.Range(0, 5).Select(i => (IReadOnlyList<string>)[r1[i], r2[i]])];
        var ours = scorer.Score(cands, multi, new BertScoreOptions { Idf = true, MultiReference = MultiReferenceMode.Elementwise });
        // bert_score flattens the reference groups before get_idf_dict: N = 10 here.
        var idf = oracle.Idf(r1.Concat(r2));
        for (var i = 0; i < 5; i++)
        {
            var a = oracle.Score(cands[i], r1[i], idf);
            var b = oracle.Score(cands[i], r2[i], idf);
            AssertClose(new(Math.Max(a.Precision, b.Precision), Math.Max(a.Recall, b.Recall), Math.Max(a.F1, b.F1)), ours[i], 1e-5, $"pair {i}");
        }
        var plain = scorer.Score(cands, multi, new BertScoreOptions { MultiReference = MultiReferenceMode.Elementwise });
        Assert.True(plain.Zip(ours).Max(t => Math.Abs(t.First.F1 - t.Second.F1)) > 1e-3, "idf did not change any score");
    }

    [Fact]
    public void IdfReferencesFixTheCorpusSoABatchScoresAsTheWholeSet()
    {
        using var scorer = Load("tiny-roberta");
        using var encoder = TransformerEncoder.FromPretrained(presets.Folder("tiny-roberta"));
        var oracle = Oracle(scorer, encoder);
        var (cands, refs) = DemoPairs();
        var corpus = refs.Concat(DemoData.References.Take(30).Select(r => r.Reference)).ToList();
        var idf = oracle.Idf(corpus);
        var options = new BertScoreOptions { Idf = true, IdfReferences = corpus };
        var whole = scorer.Score(cands, refs, options);
        var part = scorer.Score(cands[..4], refs[..4], options);
        for (var i = 0; i < 4; i++)
        {
            AssertClose(oracle.Score(cands[i], refs[i], idf), whole[i], 1e-5, $"whole {i}");
            AssertClose(whole[i], part[i], 1e-6, $"part {i}");
        }
        // Without IdfReferences the corpus is the batch's references (bert_score), so a sub-batch scores differently.
        var batchIdf = scorer.Score(cands[..4], refs[..4], new BertScoreOptions { Idf = true });
        Assert.True(batchIdf.Zip(part).Max(t => Math.Abs(t.First.F1 - t.Second.F1)) > 1e-4);
        // IdfReferences alone does nothing without Idf.
        var plain = scorer.Score(cands[..4], refs[..4]);
        var ignored = scorer.Score(cands[..4], refs[..4], new BertScoreOptions { IdfReferences = corpus });
        for (var i = 0; i < 4; i++) AssertClose(plain[i], ignored[i], 0, $"no idf {i}");
    }

    // ---- multi-reference ----

    [Fact]
    public void MultiReferenceBestFTakesOneReferenceElementwiseTakesEachMax()
    {
        using var scorer = Load("tiny-roberta");
        var (cands, refs) = DemoPairs();
        var n = 10;
        cands = cands[..n];
        var r1 = refs[..n];
        var r2 = refs[n..(2 * n)];
        var s1 = scorer.Score(cands, r1);
        var s2 = scorer.Score(cands, r2);
        IReadOnlyList<IReadOnlyList<string>> multi = [.. Enumerable.Range(0, n).Select(i => (IReadOnlyList<string>)[r1[i], r2[i]])];
        var best = scorer.Score(cands, multi);
        var bestExplicit = scorer.Score(cands, multi, new BertScoreOptions { MultiReference = MultiReferenceMode.BestF });
        var elem = scorer.Score(cands, multi, new BertScoreOptions { MultiReference = MultiReferenceMode.Elementwise });
        var differ = 0;
        for (var i = 0; i < n; i++)
        {
            var winner = s1[i].F1 >= s2[i].F1 ? s1[i] : s2[i];
            AssertClose(winner, best[i], 1e-6, $"best-f {i}");
            AssertClose(winner, bestExplicit[i], 1e-6, $"best-f explicit {i}");
            var max = new BertScoreResult(Math.Max(s1[i].Precision, s2[i].Precision), Math.Max(s1[i].Recall, s2[i].Recall), Math.Max(s1[i].F1, s2[i].F1));
            AssertClose(max, elem[i], 1e-6, $"elementwise {i}");
            if (Math.Abs(max.Precision - winner.Precision) > 1e-4 || Math.Abs(max.Recall - winner.Recall) > 1e-4) differ++;
        }
        Assert.True(differ > 0, "no candidate where the two modes differ; the test data cannot tell them apart");
    }

    // ---- baseline ----

    [Fact]
    public void BaselineRescalesWithTheRowOfTheScoringLayer()
    {
        using var scorer = Load("tiny-bart");
        Assert.Equal(3, scorer.Layers);
        var file = Path.Combine(presets.Root, "baseline-ok.tsv");
        // bert_score's rescale_baseline format: header, then one row per layer from 0.
        File.WriteAllText(file, "LAYER,P,R,F\n0,0.5,0.5,0.5\n1,0.4,0.4,0.4\n2,0.3,0.3,0.3\n3,0.21,-0.05,0.35\n4,0.9,0.9,0.9\n");
        var b = BaselineRescale.Load(file, scorer.Layers);
        Assert.Equal(new BaselineRescale(0.21, -0.05, 0.35), b);
        var (cands, refs) = DemoPairs();
        var raw = scorer.Score(cands, refs);
        var scaled = scorer.Score(cands, refs, new BertScoreOptions { Baseline = b });
        for (var i = 0; i < cands.Length; i++)
            AssertClose(new((raw[i].Precision - 0.21) / 0.79, (raw[i].Recall + 0.05) / 1.05, (raw[i].F1 - 0.35) / 0.65), scaled[i], 1e-9, $"pair {i}");
        // Rescaling applies after the reference choice: a perfect match maps to 1 whatever the baseline.
        var self = scorer.Score([cands[0]], [(IReadOnlyList<string>)[refs[0], cands[0]]], new BertScoreOptions { Baseline = b });
        AssertClose(new(1, 1, 1), self[0], 1e-6, "self rescaled");
        // The real roberta-large L17 row of the spec.
        var spec = new BaselineRescale(0.83150584, 0.8314941, 0.83122575).Apply(new(0.9, 0.9, 0.9));
        Assert.Equal((0.9 - 0.83122575) / (1 - 0.83122575), spec.F1, 12);
    }

    [Theory]
    [InlineData("LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.1,0.2,0.3\n", "no baseline row for layer 3")]
    [InlineData("LAYER,P,R,F\n0,0.1,0.2,0.3\n3,0.1,abc,0.3\n", ":3: column 'R' is not a number")]
    [InlineData("LAYER,P,R,F\n0,0.1,0.2,0.3\n\nthree,0.1,0.2,0.3\n", ":4: column 'LAYER' is not a number")]
    [InlineData("LAYER,P,R,F\n3,0.1,0.2\n", ":2: column 'F' is not a number")]
    [InlineData("LAYER,P,R\n3,0.1,0.2\n", ":1: header has no column 'F'")]
    [InlineData("", "empty baseline file")]
    [InlineData("LAYER,P,R,F\n3,0.1,1.0,0.3\n", ":2: baselines must be below 1")]
    public void BadBaselineFileNamesFileAndLine(string content, string message)
    {
        var file = Path.Combine(presets.Root, $"baseline-bad-{Guid.NewGuid():N}.csv");
        File.WriteAllText(file, content);
        var e = Assert.Throws<ModelFormatException>(() => BaselineRescale.Load(file, 3));
        Assert.Contains(file, e.Message);
        Assert.Contains(message, e.Message);

        var missing = Path.Combine(presets.Root, "no-such-baseline.csv");
        Assert.Contains(missing, Assert.Throws<ModelFormatException>(() => BaselineRescale.Load(missing, 3)).Message);
    }

    // ---- invariance ----

    [Theory]
    [MemberData(nameof(Presets))]
    public void BatchSizePaddingAndOrderDoNotChangeScores(string preset)
    {
        using var scorer = Load(preset);
        var (cands, refs) = DemoPairs();
        cands = [.. cands, "Short.", "", DemoData.References[40].Reference];
        refs = [.. refs, DemoData.References[41].Reference, "Anything at all.", "Yes"];
        var reference = scorer.Score(cands, refs, new BertScoreOptions { BatchSize = 1 });
        var passesAlone = scorer.EncoderPasses;
        foreach (var bs in new[] { 3, 64 })
        {
            var before = scorer.EncoderPasses;
            var s = scorer.Score(cands, refs, new BertScoreOptions { BatchSize = bs });
            Assert.True(scorer.EncoderPasses - before < passesAlone, "larger batches should need fewer encoder passes");
            for (var i = 0; i < cands.Length; i++) AssertClose(reference[i], s[i], 1e-6, $"{preset} batch {bs} pair {i}");
        }
        var perm = Enumerable.Range(0, cands.Length).OrderBy(i => (i * 7919) % 23).ToArray();
        Assert.NotEqual(Enumerable.Range(0, cands.Length), perm);
        var shuffled = scorer.Score([.. perm.Select(i => cands[i])], [.. perm.Select(i => refs[i])], new BertScoreOptions { BatchSize = 5 });
        for (var k = 0; k < perm.Length; k++) AssertClose(reference[perm[k]], shuffled[k], 1e-6, $"{preset} shuffled pair {perm[k]}");
    }

    // ---- empty and odd input ----

    [Theory]
    [MemberData(nameof(Presets))]
    public void EmptyCandidateOrReferenceScoresZeroAndPunctuationIsFinite(string preset)
    {
        using var scorer = Load(preset);
        var sentence = DemoData.References[0].Reference;
        foreach (var idf in new[] { false, true })
        {
            var s = scorer.Score(["", "   ", "?!...", sentence, sentence], [sentence, sentence, sentence, "", " \t "],
                new BertScoreOptions { Idf = idf });
            foreach (var (r, what) in new[] { (s[0], "empty candidate"), (s[1], "blank candidate"), (s[3], "empty reference"), (s[4], "blank reference") })
                AssertClose(new(0, 0, 0), r, 0, $"{preset} idf={idf} {what}");
            Assert.True(double.IsFinite(s[2].Precision) && double.IsFinite(s[2].Recall) && double.IsFinite(s[2].F1), $"punctuation: {s[2]}");
            Assert.NotEqual(0, s[2].F1);
        }
        var both = scorer.Score([""], [""]);
        AssertClose(new(0, 0, 0), both[0], 0, "empty against empty");
    }

    // ---- special tokens ----

    [Theory]
    [InlineData("tiny-bert", false)]
    [InlineData("tiny-roberta", true)]
    public void ClsAndSepWeighZeroForWordPieceAndBpe(string preset, bool bpe)
    {
        using var scorer = Load(preset);
        var tok = scorer.Tokenizer;
        Assert.Equal(bpe, tok.IsByteLevelBpe);
        if (bpe) { Assert.Equal(0, tok.ClsId); Assert.Equal(2, tok.SepId); }
        else
        {
            var vocab = File.ReadAllLines(Path.Combine(presets.Folder(preset), "vocab.txt"));
            Assert.Equal(Array.IndexOf(vocab, "[CLS]"), tok.ClsId);
            Assert.Equal(Array.IndexOf(vocab, "[SEP]"), tok.SepId);
        }
        var (cands, refs) = DemoPairs();
        var ids = tok.EncodeForScoring(cands[0]);
        Assert.Equal(tok.ClsId, ids[0]);
        Assert.Equal(tok.SepId, ids[^1]);

        var uniform = IdfWeights.Uniform(tok.ClsId, tok.SepId);
        var idf = IdfWeights.FromReferences(refs.Select(tok.EncodeForScoring), tok.ClsId, tok.SepId);
        foreach (var w in new[] { uniform, idf })
        {
            Assert.Equal(0.0, w[tok.ClsId]);
            Assert.Equal(0.0, w[tok.SepId]);
            Assert.True(w[ids[1]] > 0);
        }
        Assert.Equal(1.0, uniform[tok.PadId]); // only CLS and SEP are zeroed, as in bert_score

        // Through a score: the scorer equals the CLS/SEP-weight-0 oracle and is far from the one that weighs them.
        using var encoder = TransformerEncoder.FromPretrained(presets.Folder(preset));
        var right = Oracle(scorer, encoder).Score(cands, refs, idf: false);
        var wrong = Oracle(scorer, encoder, weightSpecials: true).Score(cands, refs, idf: false);
        var ours = scorer.Score(cands, refs);
        for (var i = 0; i < cands.Length; i++) AssertClose(right[i], ours[i], 1e-5, $"pair {i}");
        Assert.True(ours.Zip(wrong).Max(t => Math.Abs(t.First.F1 - t.Second.F1)) > 1e-3, "weighting CLS/SEP would not change any score");
    }

    // ---- argument errors ----

    [Fact]
    public void CountMismatchNamesBothCounts()
    {
        using var scorer = Load("tiny-bert");
        var e = Assert.Throws<ArgumentException>(() => scorer.Score(["a", "b", "c"], ["x", "y"]));
        Assert.Matches(@"\b3\b", e.Message);
        Assert.Matches(@"\b2\b", e.Message);
        var m = Assert.Throws<ArgumentException>(() => scorer.Score(["a", "b"], [(IReadOnlyList<string>)["x", "z"]]));
        Assert.Matches(@"\b2\b", m.Message);
        Assert.Matches(@"\b1\b", m.Message);
        Assert.Throws<ArgumentException>(() => scorer.Score(["a"], [(IReadOnlyList<string>)[]]));
        Assert.Throws<ArgumentException>(() => scorer.Score(["a"], ["b"], new BertScoreOptions { BatchSize = 0 }));
        Assert.Throws<ArgumentException>(() => Load("tiny-bert", 5));
        Assert.Throws<ArgumentException>(() => Load("tiny-bert", -1));
    }
}
