using RefAlign.Compute.Encoders;
using RefAlign.Compute.Rewards;
using RefAlign.Compute.Tests.Oracle;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Reward models (docs/algorithms.md §9) against a double-precision recomputation from the folder's files: the oracle
/// decoder's final hidden state at the last token times <c>score.weight</c>, or the oracle encoder's first state through
/// the pooler/classifier in doubles; and the folders a reward model must not be.
/// </summary>
public sealed class RewardModelScorerTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-rm-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static readonly string[] Prompts = ["What is 3 + 4?", "How many metres are in 2 kilometres?", "Name a fruit.", "Why is the sky blue?"];
    static readonly string[] Responses = ["7", "It is 2000 metres, since one kilometre is a thousand metres.", "An apple.", ""];

    string Folder(string architecture, long seed = 3)
    {
        var dir = Path.Combine(_root, $"{architecture}-{seed}");
        if (!Directory.Exists(dir)) RewardModelPresets.Initialize(dir, architecture, seed);
        return dir;
    }

    static double Dot(double[] a, double[] w, int row = 0)
    {
        double s = 0;
        for (var i = 0; i < a.Length; i++) s += a[i] * w[row * a.Length + i];
        return s;
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("mistral")]
    public void DecoderScoresEqualTheLastHiddenStateTimesTheScoreHead(string architecture)
    {
        var folder = Folder(architecture);
        using var scorer = RewardModelScorer.FromPretrained(folder);
        var weights = ReferenceDecoder.ReadWeights(folder);
        var oracle = new ReferenceDecoder(RewardModelScorer.DecoderConfig(folder), weights);
        var scores = scorer.Score(Prompts, Responses, maxBatch: 3); // padded batches of unequal rows
        for (var i = 0; i < Prompts.Length; i++)
        {
            var ids = scorer.DecoderTokens(Prompts[i], Responses[i]);
            var expected = Dot(oracle.FinalHidden(ids)[^1], weights["score.weight"]);
            Assert.True(Math.Abs(expected - scores[i]) < 1e-5 * Math.Max(1, Math.Abs(expected)), $"{architecture} sample {i}: oracle {expected:R}, scorer {scores[i]:R}");
        }
        Assert.True(scores.Distinct().Count() == scores.Length, $"scores do not depend on the text: {string.Join(", ", scores)}");
        // Alone or batched, the same number.
        Assert.Equal(scores[1], scorer.Score([Prompts[1]], [Responses[1]])[0], 5);
    }

    [Fact]
    public void DecoderReadsTheTemplatedPromptThenTheResponse()
    {
        using var scorer = RewardModelScorer.FromPretrained(Folder("llama"));
        var tok = Tokenization.TextTokenizer.Load(scorer.Folder);
        var ids = scorer.DecoderTokens("Name a fruit.", "An apple.");
        var prompt = Tokenization.ChatTemplates.Encode(tok, Tokenization.ChatTemplates.Resolve(Tokenization.ChatTemplate.Auto, tok).Prompt("Name a fruit."));
        Assert.Equal([.. prompt, .. tok.Encode("An apple.", addSpecialTokens: false)], ids);
    }

    [Theory]
    [InlineData("tiny-bert")]
    [InlineData("tiny-roberta")]
    public void EncoderScoresEqualThePooledClassifierInDoublePrecision(string preset)
    {
        var folder = Folder(preset);
        using var scorer = RewardModelScorer.FromPretrained(folder);
        var bert = preset == "tiny-bert";
        var prefix = bert ? "bert." : "roberta.";
        var weights = ReferenceDecoder.ReadWeights(folder);
        var body = weights.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
        var config = EncoderConfig.Load(folder);
        var oracle = new ReferenceEncoder(config, body);
        var scores = scorer.Score(Prompts, Responses, maxBatch: 3);
        var h = config.HiddenSize;
        for (var i = 0; i < Prompts.Length; i++)
        {
            var (ids, types) = scorer.EncoderTokens(Prompts[i], Responses[i]);
            var states = oracle.HiddenStates(ids, config.NumHiddenLayers, types);
            var first = Enumerable.Range(0, h).Select(k => states[0, k]).ToArray();
            var (dw, db, ow, ob) = bert
                ? ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")
                : ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias");
            var pooled = Enumerable.Range(0, h).Select(o => Math.Tanh(Dot(first, weights[dw], o) + weights[db][o])).ToArray();
            var expected = Dot(pooled, weights[ow]) + weights[ob][0];
            Assert.True(Math.Abs(expected - scores[i]) < 1e-5, $"{preset} sample {i}: oracle {expected:R}, scorer {scores[i]:R}");
            // BERT's second segment carries token type 1 (the pair encoding); RoBERTa has none.
            Assert.Equal(bert, types.Contains(1));
        }
        Assert.True(scores.Distinct().Count() == scores.Length, $"scores do not depend on the text: {string.Join(", ", scores)}");
    }

    [Fact]
    public void FoldersThatAreNotOneLabelClassifiersAreRefusedWithTheReason()
    {
        // A causal LM: no classification head at all.
        var lm = Path.Combine(_root, "lm");
        ModelPresets.Initialize(lm, "tiny", "llama", seed: 1);
        Assert.Contains("not a sequence classifier", Assert.Throws<ModelFormatException>(() => RewardModelScorer.Check(lm)).Message);

        // The architecture says classifier, the weights have no score head.
        var headless = Folder("llama", seed: 9);
        var tensors = Formats.ModelWeights.Load(headless);
        tensors.Remove("score.weight");
        Formats.ModelWeights.Save(headless, tensors);
        var e = Assert.Throws<ModelFormatException>(() => RewardModelScorer.Check(headless));
        Assert.Contains("no classification head", e.Message);
        Assert.Contains("score.weight", e.Message);

        // Two labels: not one score.
        var two = Folder("tiny-roberta", seed: 4);
        var config = Path.Combine(two, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"num_labels\": 1", "\"num_labels\": 2"));
        Assert.Contains("num_labels", Assert.Throws<ModelFormatException>(() => RewardModelScorer.Check(two)).Message);
    }
}
