using System.Text.Json.Nodes;
using RefAlign.Compute.BertScore;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Tokenization;
using RefAlign.Presets;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests.CrossCheck;

/// <summary>
/// BERTScore against PyTorch itself (tests/crosscheck/torchref/bertscore.py): the tiny BERT, RoBERTa and BART encoder
/// presets recomputed in torch from their folders (each sentence alone, as transformers computes it), and bert_score's
/// greedy matching with and without idf on those hidden states, at every layer. Ours are the encoder's hidden states
/// (the sentences batched and padded, as the scorer runs them) and <see cref="BertScorer"/>'s P, R and F; torch gets our
/// token ids (the tokenizers are checked elsewhere).
/// </summary>
public sealed class TorchBertScoreTests(ITestOutputHelper output) : IDisposable
{
    // Hidden states relative to their largest value (LayerNorm outputs reach about 4 here); P, R and F are cosines.
    const double HiddenRelTol = 1e-6, ScoreTol = 1e-6;

    readonly string _root = Directory.CreateTempSubdirectory("refalign-torchbs-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    static readonly (string Candidate, string Reference)[] Pairs =
    [
        ("the cat sat on the mat", "a cat was sitting on a mat"),
        ("A quick brown fox jumps.", "The fast brown fox leapt over it."),
        ("hello world", "hi there world"),
        ("The capital of France is Paris.", "The capital of France is Paris."),
        ("", "an empty candidate scores zero"),
        ("an empty reference scores zero", ""),
        ("!!! ??? ...", "punctuation only, against words"),
        ("Zürich, café, naïve — 日本語 and 😀", "Zurich cafe naive japanese emoji"),
        ("I can't help with that request.", "I cannot help with that."),
        ("2 + 2 = 4, and 3.14159 is pi", "two plus two is four"),
        ("the the the the the", "the cat sat on the mat"),
        ("Canberra is the capital of Australia, not Sydney; many people get this wrong because Sydney is larger and better known abroad.",
         "The capital of Australia is Canberra."),
    ];

    [Fact]
    public async Task Hidden_states_and_bert_score_of_bert_roberta_and_bart_equal_pytorch()
    {
        var files = new[] { "tiny-bert", "tiny-roberta", "tiny-bart" }.Select(WriteCase).ToList();
        var results = await TorchReference.RunAsync("bertscore", files);
        Assert.Equal(files.Count, results.Count);
        var failures = new List<string>();
        foreach (var r in results)
        {
            double N(string key) => TorchReference.Number(r, key);
            var line = $"{r["name"],-13} hidden states max |Δ| {N("max_hidden_diff"):E1} (values up to {N("max_hidden_abs"):F1}, worst {r["worst_hidden"]}) | " +
                       $"P/R/F max |Δ| plain {N("max_prf_diff_plain"):E1}, idf {N("max_prf_diff_idf"):E1} | {N("layers")} layers × {N("pairs")} pairs";
            output.WriteLine(line);
            if (N("max_hidden_diff") > HiddenRelTol * N("max_hidden_abs") || N("max_prf_diff_plain") > ScoreTol || N("max_prf_diff_idf") > ScoreTol) failures.Add(line);
        }
        Assert.True(failures.Count == 0, "BERTScore differs from PyTorch:\n" + string.Join("\n", failures));
    }

    string WriteCase(string preset)
    {
        var folder = Path.Combine(_root, preset);
        EncoderPresets.Initialize(folder, preset, seed: 2);
        var tokenizer = EncoderTokenizer.Load(folder);
        var sentences = Pairs.SelectMany(p => new[] { p.Candidate, p.Reference }).Distinct().ToList();
        var ids = sentences.Select(tokenizer.EncodeForScoring).ToList();
        int Index(string s) => sentences.IndexOf(s);

        JsonObject scores = new() { ["plain"] = new JsonObject(), ["idf"] = new JsonObject() };
        var hidden = new Dictionary<string, Tensor>();
        int layerCount;
        using (var encoder = TransformerEncoder.FromPretrained(folder))
        {
            layerCount = encoder.Config.NumHiddenLayers;
            var length = ids.Max(x => x.Length);
            var input = new long[ids.Count * length];
            var mask = new long[input.Length];
            Array.Fill(input, tokenizer.PadId);
            for (var i = 0; i < ids.Count; i++)
                for (var t = 0; t < ids[i].Length; t++) (input[i * length + t], mask[i * length + t]) = (ids[i][t], 1);
            for (var layer = 0; layer <= layerCount; layer++)
            {
                using var h = encoder.HiddenStates(tensor(input, [ids.Count, length]), tensor(mask, [ids.Count, length]), layer);
                for (var i = 0; i < ids.Count; i++) hidden[$"L{layer}.S{i}"] = h[i].narrow(0, 0, ids[i].Length).clone();
            }
        }
        for (var layer = 0; layer <= layerCount; layer++)
        {
            using var scorer = BertScorer.FromPretrained(folder, layer);
            foreach (var (kind, idf) in new[] { ("plain", false), ("idf", true) })
            {
                var results = scorer.Score([.. Pairs.Select(p => p.Candidate)], [.. Pairs.Select(p => p.Reference)], new BertScoreOptions { Idf = idf });
                ((JsonObject)scores[kind]!)[layer.ToString(System.Globalization.CultureInfo.InvariantCulture)] =
                    new JsonArray([.. results.Select(s => (JsonNode)new JsonArray(s.Precision, s.Recall, s.F1))]);
            }
        }
        var hiddenFile = Path.Combine(_root, $"{preset}-hidden.safetensors");
        SafeTensors.SaveFile(hiddenFile, hidden);
        foreach (var t in hidden.Values) t.Dispose();

        var json = new JsonObject
        {
            ["name"] = preset, ["model"] = folder, ["cls"] = tokenizer.ClsId, ["sep"] = tokenizer.SepId,
            ["sentences"] = new JsonArray([.. ids.Select(x => (JsonNode)new JsonArray([.. x.Select(i => (JsonNode)i)]))]),
            ["pairs"] = new JsonArray([.. Pairs.Select(p => (JsonNode)new JsonArray(Index(p.Candidate), Index(p.Reference)))]),
            ["idf_references"] = new JsonArray([.. Pairs.Select(p => (JsonNode)Index(p.Reference))]),
            ["layers"] = new JsonArray([.. Enumerable.Range(0, layerCount + 1).Select(l => (JsonNode)l)]),
            ["ours"] = new JsonObject { ["hidden"] = hiddenFile, ["scores"] = scores },
        };
        var file = Path.Combine(_root, $"{preset}.json");
        File.WriteAllText(file, json.ToJsonString());
        return file;
    }
}
