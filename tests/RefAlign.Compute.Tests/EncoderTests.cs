using System.Text.Json.Nodes;
using RefAlign.Presets;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Tests.Oracle;
using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// TransformerEncoder (TorchSharp, float32) against the independent double-precision <see cref="ReferenceEncoder"/>,
/// plus padding, checkpoint-name, error-message, round-trip and preset checks. Weights are drawn large
/// (initializer_range 0.25, random LayerNorm weights and biases) so attention and every parameter matter.
/// </summary>
public sealed class EncoderTests
{
    const double Tolerance = 1e-4;
    const int Vocab = 53;

    internal static EncoderConfig Small(string type, bool scaleEmbedding = false) => type switch
    {
        "bert" => new EncoderConfig
        {
            Architecture = "BertModel", ModelType = "bert", VocabSize = Vocab, HiddenSize = 32, NumHiddenLayers = 3,
            NumAttentionHeads = 4, IntermediateSize = 48, MaxPositionEmbeddings = 40, TypeVocabSize = 2,
            LayerNormEps = 1e-12, PadTokenId = 0, InitializerRange = 0.25,
        },
        "roberta" => new EncoderConfig
        {
            Architecture = "RobertaModel", ModelType = "roberta", VocabSize = Vocab, HiddenSize = 32, NumHiddenLayers = 3,
            NumAttentionHeads = 4, IntermediateSize = 48, MaxPositionEmbeddings = 42, TypeVocabSize = 1,
            LayerNormEps = 1e-5, PadTokenId = 1, BosTokenId = 0, EosTokenId = 2, InitializerRange = 0.25,
        },
        _ => new EncoderConfig
        {
            Architecture = "BartModel", ModelType = "bart", VocabSize = Vocab, HiddenSize = 32, NumHiddenLayers = 3,
            NumAttentionHeads = 4, IntermediateSize = 48, MaxPositionEmbeddings = 40, TypeVocabSize = 0,
            LayerNormEps = 1e-5, PadTokenId = 1, BosTokenId = 0, EosTokenId = 2, ScaleEmbedding = scaleEmbedding,
            InitializerRange = 0.25,
        },
    };

    // ---- oracle ----

    [Fact]
    public void BertHiddenStatesMatchOracleAtEveryLayer()
    {
        using var f = Fixture.Create(Small("bert"), seed: 21);
        var ids = Tokens(11, seed: 1);
        for (var l = 0; l <= 3; l++) f.AssertMatches(ids, l);
    }

    [Fact]
    public void RobertaHiddenStatesMatchOracleWithPadOffsetPositions()
    {
        using var f = Fixture.Create(Small("roberta"), seed: 22);
        var ids = Tokens(12, seed: 2);
        var wrong = new ReferenceEncoder(f.Model.Config, f.Weights, new EncoderOracleFaults { PlainRobertaPositions = true });
        Assert.True(MaxAbsDiff(wrong.HiddenStates(ids, 0), f.ModelStates(ids, 0)) > 1e-2, "RoBERTa position offset did not matter");
        foreach (var l in new[] { 0, 2, 3 }) f.AssertMatches(ids, l);
    }

    [Fact]
    public void BartHiddenStatesMatchOracleWithScaledEmbeddingsAndOffsetPositions()
    {
        using var f = Fixture.Create(Small("bart", scaleEmbedding: true), seed: 23);
        var ids = Tokens(10, seed: 3);
        var wrong = new ReferenceEncoder(f.Model.Config, f.Weights, new EncoderOracleFaults { NoBartPositionOffset = true });
        Assert.True(MaxAbsDiff(wrong.HiddenStates(ids, 1), f.ModelStates(ids, 1)) > 1e-2, "BART position offset did not matter");
        var unscaled = new ReferenceEncoder(f.Model.Config with { ScaleEmbedding = false }, f.Weights);
        Assert.True(MaxAbsDiff(unscaled.HiddenStates(ids, 0), f.ModelStates(ids, 0)) > 1e-2, "embed_scale did not matter");
        foreach (var l in new[] { 0, 1, 3 }) f.AssertMatches(ids, l);
    }

    [Fact]
    public void ExactGeluIsDistinguishedFromTanhApproximation()
    {
        using var f = Fixture.Create(Small("bert"), seed: 24);
        var ids = Tokens(9, seed: 4);
        var tanh = new ReferenceEncoder(f.Model.Config, f.Weights, new EncoderOracleFaults { TanhGelu = true });
        var diff = MaxAbsDiff(tanh.HiddenStates(ids, 3), f.ModelStates(ids, 3));
        Assert.True(diff > Tolerance, $"tanh-GELU oracle agreed with the exact-GELU model (max |diff| {diff:E2}).");
        f.AssertMatches(ids, 3);
    }

    [Fact]
    public void OracleErfIsAccurate()
    {
        Assert.Equal(0.5204998778130465, ReferenceEncoder.Erf(0.5), 12);
        Assert.Equal(0.8427007929497149, ReferenceEncoder.Erf(1), 12);
        Assert.Equal(-0.9953222650189527, ReferenceEncoder.Erf(-2), 12);
        Assert.Equal(0.9999779095030014, ReferenceEncoder.Erf(3), 12);
        Assert.Equal(0.9999999999984626, ReferenceEncoder.Erf(5), 12);
    }

    // ---- padding ----

    [Theory]
    [InlineData("bert")]
    [InlineData("roberta")]
    [InlineData("bart")]
    public void RightPaddingDoesNotChangeRealTokenStates(string type)
    {
        using var f = Fixture.Create(Small(type, scaleEmbedding: type == "bart"), seed: 25);
        var pad = f.Model.Config.PadTokenId;
        var longIds = Tokens(12, seed: 5);
        var shortIds = Tokens(5, seed: 6);
        long[] flat = [.. longIds.Select(i => (long)i), .. shortIds.Select(i => (long)i), .. Enumerable.Repeat((long)pad, 7)];
        long[] maskFlat = [.. Enumerable.Repeat(1L, 17), .. Enumerable.Repeat(0L, 7)];
        using var x = tensor(flat, 2, 12);
        using var mask = tensor(maskFlat, 2, 12);
        var layers = f.Model.Config.NumHiddenLayers;
        using var batch = f.Model.HiddenStates(x, mask, layers);
        Assert.False(batch.isnan().any().item<bool>(), "padded batch produced NaN");
        var alone = new[] { longIds, shortIds };
        for (var row = 0; row < 2; row++)
        {
            var single = f.ModelStates(alone[row], layers);
            var batched = Rows(batch, row, alone[row].Length);
            var diff = MaxAbsDiff(single, batched);
            Assert.True(diff <= 1e-5, $"{type} row {row}: padding changed real-token states by {diff:E2}.");
        }
        f.AssertMatches(shortIds, layers);
    }

    // ---- checkpoint names ----

    [Fact]
    public void RobertaForMaskedLmCheckpointWithPrefixAndHeadLoads()
    {
        using var f = Fixture.Create(Small("roberta"), seed: 26);
        var dir = f.Rewrite("RobertaForMaskedLM", n => ["roberta." + n],
            new() { ["lm_head.dense.weight"] = randn(32, 32), ["lm_head.bias"] = zeros(Vocab) });
        using var loaded = TransformerEncoder.FromPretrained(dir);
        Assert.Equal("RobertaForMaskedLM", loaded.Config.Architecture);
        f.AssertSameStates(loaded);
    }

    [Fact]
    public void BertForMaskedLmCheckpointWithPrefixAndGammaBetaLoads()
    {
        using var f = Fixture.Create(Small("bert"), seed: 27);
        static string Old(string n) => n.EndsWith("LayerNorm.weight", StringComparison.Ordinal) ? n[..^6] + "gamma"
            : n.EndsWith("LayerNorm.bias", StringComparison.Ordinal) ? n[..^4] + "beta" : n;
        var dir = f.Rewrite("BertForMaskedLM", n => ["bert." + Old(n)],
            new() { ["cls.predictions.bias"] = zeros(Vocab), ["bert.embeddings.position_ids"] = arange(40L).unsqueeze(0) });
        Assert.Contains("bert.encoder.layer.0.output.LayerNorm.gamma", SafeTensors.ReadHeader(Path.Combine(dir, "model.safetensors"), out _).Keys);
        using var loaded = TransformerEncoder.FromPretrained(dir);
        f.AssertSameStates(loaded);
    }

    [Fact]
    public void BartForSequenceClassificationCheckpointWithTiedEmbeddingLoads()
    {
        using var f = Fixture.Create(Small("bart"), seed: 28);
        // Old checkpoints store the token table under each tied name; here only the encoder's copy is present.
        var dir = f.Rewrite("BartForSequenceClassification",
            n => [n == "shared.weight" ? "model.encoder.embed_tokens.weight" : "model." + n],
            new() { ["model.decoder.layers.0.fc1.weight"] = randn(48, 32), ["classification_head.out_proj.bias"] = zeros(3) });
        using var loaded = TransformerEncoder.FromPretrained(dir);
        f.AssertSameStates(loaded);
    }

    [Fact]
    public void MissingTensorErrorNamesFileAndTensor()
    {
        using var f = Fixture.Create(Small("roberta"), seed: 29);
        var dir = f.Rewrite("RobertaForMaskedLM",
            n => n == "encoder.layer.1.output.dense.bias" ? [] : ["roberta." + n], []);
        var e = Assert.Throws<ModelFormatException>(() => TransformerEncoder.FromPretrained(dir));
        Assert.Contains(Path.Combine(dir, "model.safetensors"), e.Message, StringComparison.Ordinal);
        Assert.Contains("'roberta.encoder.layer.1.output.dense.bias'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MisshapenTensorErrorNamesFileTensorAndShapes()
    {
        using var f = Fixture.Create(Small("bert"), seed: 30);
        var dir = f.Rewrite("BertModel", n => [n], [], resize: "encoder.layer.2.attention.self.key.weight");
        var e = Assert.Throws<ModelFormatException>(() => TransformerEncoder.FromPretrained(dir));
        Assert.Contains(Path.Combine(dir, "model.safetensors"), e.Message, StringComparison.Ordinal);
        Assert.Contains("'encoder.layer.2.attention.self.key.weight'", e.Message, StringComparison.Ordinal);
        Assert.Contains("[31, 32]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[32, 32]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WeightsWithMoreLayersThanConfigAreRejected()
    {
        using var f = Fixture.Create(Small("bart"), seed: 31);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(f.Dir, "config.json")))!.AsObject();
        cfg["encoder_layers"] = 2;
        File.WriteAllText(Path.Combine(f.Dir, "config.json"), cfg.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => TransformerEncoder.FromPretrained(f.Dir));
        Assert.Contains("encoder.layers.2.", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownArchitectureErrorNamesConfigAndField()
    {
        using var f = Fixture.Create(Small("bert"), seed: 32);
        var path = Path.Combine(f.Dir, "config.json");
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        cfg["architectures"] = new JsonArray("GPT2LMHeadModel");
        File.WriteAllText(path, cfg.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => TransformerEncoder.FromPretrained(f.Dir));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("'architectures'", e.Message, StringComparison.Ordinal);
        Assert.Contains("GPT2LMHeadModel", e.Message, StringComparison.Ordinal);
    }

    // ---- round trip, init, presets, config ----

    [Theory]
    [InlineData("bert")]
    [InlineData("roberta")]
    [InlineData("bart")]
    public void SaveLoadSaveIsBitIdentical(string type)
    {
        using var f = Fixture.Create(Small(type), seed: 33);
        var again = Path.Combine(f.Dir, "again");
        f.Model.SavePretrained(again);
        Assert.Equal(File.ReadAllBytes(Path.Combine(f.Dir, "model.safetensors")), File.ReadAllBytes(Path.Combine(again, "model.safetensors")));
        Assert.Equal(File.ReadAllText(Path.Combine(f.Dir, "config.json")), File.ReadAllText(Path.Combine(again, "config.json")));
        Assert.Equal(f.Model.Config, EncoderConfig.Load(again));
    }

    [Fact]
    public void InitializeWeightsIsHfStyleAndSeeded()
    {
        var cfg = Small("roberta") with { InitializerRange = 0.02, HiddenSize = 64, IntermediateSize = 256 };
        using var a = new TransformerEncoder(cfg);
        using var b = new TransformerEncoder(cfg);
        a.InitializeWeights(5);
        b.InitializeWeights(5);
        var p = a.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        Assert.All(b.named_parameters(), kv => Assert.True(Same(p[kv.name], kv.parameter), kv.name));
        Assert.True(p["embeddings.LayerNorm.weight"].eq(1).all().item<bool>());
        Assert.True(p["encoder.layer.0.output.LayerNorm.bias"].eq(0).all().item<bool>());
        Assert.True(p["encoder.layer.1.intermediate.dense.bias"].eq(0).all().item<bool>());
        Assert.Equal(0.02, p["encoder.layer.1.intermediate.dense.weight"].std().item<float>(), 3);
        Assert.True(p["embeddings.word_embeddings.weight"][1].eq(0).all().item<bool>(), "pad row of word_embeddings");
        Assert.True(p["embeddings.position_embeddings.weight"][1].eq(0).all().item<bool>(), "pad row of position_embeddings");
    }

    [Theory]
    [InlineData("tiny-bert")]
    [InlineData("tiny-roberta")]
    [InlineData("tiny-bart")]
    [InlineData("small-bert")]
    [InlineData("small-roberta")]
    [InlineData("small-bart")]
    public void PresetsWriteLoadableHfFolders(string preset)
    {
        var dir = TempDir();
        try
        {
            var cfg = EncoderPresets.Initialize(dir, preset, seed: 1, folder => { File.WriteAllText(Path.Combine(folder, "vocab.marker"), ""); return 120; });
            Assert.True(File.Exists(Path.Combine(dir, "vocab.marker")));
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            var type = preset[(preset.IndexOf('-') + 1)..];
            Assert.Equal(type, json["model_type"]!.GetValue<string>());
            Assert.Equal(cfg.BaseArchitecture, json["architectures"]![0]!.GetValue<string>());
            var hidden = preset.StartsWith("tiny", StringComparison.Ordinal) ? 64 : 256;
            Assert.Equal(hidden, cfg.HiddenSize);
            Assert.Equal(preset.StartsWith("tiny", StringComparison.Ordinal) ? 4 : 6, cfg.NumHiddenLayers);
            var header = SafeTensors.ReadHeader(Path.Combine(dir, "model.safetensors"), out _);
            switch (type)
            {
                case "roberta":
                    Assert.Equal((514, 1, 1), (json["max_position_embeddings"]!.GetValue<int>(), json["pad_token_id"]!.GetValue<int>(), json["type_vocab_size"]!.GetValue<int>()));
                    break;
                case "bart":
                    Assert.Equal(1024, json["max_position_embeddings"]!.GetValue<int>());
                    Assert.Equal(new long[] { 1026, hidden }, header["encoder.embed_positions.weight"].Shape);
                    Assert.Equal(new long[] { 120, hidden }, header["shared.weight"].Shape);
                    Assert.Equal(hidden, json["d_model"]!.GetValue<int>());
                    break;
                default:
                    Assert.Equal(new long[] { 512, hidden }, header["embeddings.position_embeddings.weight"].Shape);
                    break;
            }
            using var m = TransformerEncoder.FromPretrained(dir);
            Assert.Equal(cfg, m.Config);
            using var ids = tensor(new long[] { 0, 5, 9, 2 }, 1, 4);
            using var mask = ones_like(ids);
            using var h = m.HiddenStates(ids, mask, EncoderPresets.DefaultLayers(preset));
            Assert.Equal(new long[] { 1, 4, hidden }, h.shape);
        }
        finally { TryDelete(dir); }
    }

    [Fact]
    public void DefaultLayersFollowBertScore()
    {
        Assert.Equal(17, EncoderPresets.DefaultLayers("roberta-large"));
        Assert.Equal(10, EncoderPresets.DefaultLayers("roberta-base"));
        Assert.Equal(9, EncoderPresets.DefaultLayers("bert-base-uncased"));
        Assert.Equal(5, EncoderPresets.DefaultLayers("distilbert-base-uncased"));
        Assert.Equal(40, EncoderPresets.DefaultLayers("microsoft/deberta-xlarge-mnli"));
        Assert.Equal(11, EncoderPresets.DefaultLayers("facebook/bart-large-mnli"));
        Assert.Equal(3, EncoderPresets.DefaultLayers("tiny-roberta"));
        Assert.Equal(5, EncoderPresets.DefaultLayers("small-bart"));
        Assert.Equal(3, EncoderPresets.DefaultLayers("/models/tiny-bert/"));
        Assert.Throws<ArgumentException>(() => EncoderPresets.DefaultLayers("gpt2"));
    }

    [Fact]
    public void ReleasedConfigsParse()
    {
        var dir = TempDir();
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures":["RobertaForMaskedLM"],"attention_probs_dropout_prob":0.1,"bos_token_id":0,"eos_token_id":2,
                 "hidden_act":"gelu","hidden_dropout_prob":0.1,"hidden_size":1024,"initializer_range":0.02,"intermediate_size":4096,
                 "layer_norm_eps":1e-05,"max_position_embeddings":514,"model_type":"roberta","num_attention_heads":16,
                 "num_hidden_layers":24,"pad_token_id":1,"type_vocab_size":1,"vocab_size":50265}
                """);
            var r = EncoderConfig.Load(dir);
            Assert.Equal(("roberta", 1024, 24, 16, 4096, 514, 1, 1, 1e-5), (r.ModelType, r.HiddenSize, r.NumHiddenLayers,
                r.NumAttentionHeads, r.IntermediateSize, r.MaxPositionEmbeddings, r.TypeVocabSize, r.PadTokenId, r.LayerNormEps));
            Assert.Equal(512, r.MaxSequenceLength);

            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"activation_function":"gelu","architectures":["BartForSequenceClassification"],"d_model":1024,"decoder_attention_heads":16,
                 "decoder_ffn_dim":4096,"decoder_layers":12,"encoder_attention_heads":16,"encoder_ffn_dim":4096,"encoder_layers":12,
                 "id2label":{"0":"contradiction","1":"neutral","2":"entailment"},"max_position_embeddings":1024,"model_type":"bart",
                 "normalize_before":false,"pad_token_id":1,"scale_embedding":false,"vocab_size":50265}
                """);
            var b = EncoderConfig.Load(dir);
            Assert.Equal(("bart", 1024, 12, 16, 4096, 1024, 1026, 1, false, 1e-5), (b.ModelType, b.HiddenSize, b.NumHiddenLayers,
                b.NumAttentionHeads, b.IntermediateSize, b.MaxPositionEmbeddings, b.PositionTableSize, b.PadTokenId, b.ScaleEmbedding, b.LayerNormEps));

            File.WriteAllText(Path.Combine(dir, "config.json"), """
                {"architectures":["BertForMaskedLM"],"hidden_act":"gelu","hidden_size":768,"intermediate_size":3072,
                 "layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert","num_attention_heads":12,
                 "num_hidden_layers":12,"pad_token_id":0,"type_vocab_size":2,"vocab_size":30522}
                """);
            var t = EncoderConfig.Load(dir);
            Assert.Equal(("bert", 768, 12, 2, 0, 1e-12), (t.ModelType, t.HiddenSize, t.NumHiddenLayers, t.TypeVocabSize, t.PadTokenId, t.LayerNormEps));
        }
        finally { TryDelete(dir); }
    }

    [Fact]
    public void LayersOutsideTheModelAreRejected()
    {
        using var m = new TransformerEncoder(Small("bert"));
        using var ids = tensor(new long[] { 3, 4 }, 1, 2);
        using var mask = ones_like(ids);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.HiddenStates(ids, mask, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.HiddenStates(ids, mask, -1));
        using var tooLong = ones(1, 41, ScalarType.Int64);
        Assert.Throws<ArgumentException>(() => m.HiddenStates(tooLong, tooLong, 1));
    }

    // ---- helpers ----

    sealed class Fixture : IDisposable
    {
        Fixture(string dir, TransformerEncoder model, Dictionary<string, double[]> weights)
        {
            Dir = dir;
            Model = model;
            Weights = weights;
            Oracle = new ReferenceEncoder(model.Config, weights);
        }

        public string Dir { get; }
        public TransformerEncoder Model { get; }
        public ReferenceEncoder Oracle { get; }
        public Dictionary<string, double[]> Weights { get; }

        /// <summary>Random model → save → load back; the oracle reads the saved tensors.</summary>
        public static Fixture Create(EncoderConfig cfg, long seed)
        {
            var dir = TempDir();
            try
            {
                using (var m = new TransformerEncoder(cfg))
                {
                    m.InitializeWeights(seed);
                    RandomiseNormsAndBiases(m, seed + 1000);
                    m.SavePretrained(dir);
                }
                return new Fixture(dir, TransformerEncoder.FromPretrained(dir), ReferenceDecoder.ReadWeights(dir));
            }
            catch
            {
                TryDelete(dir);
                throw;
            }
        }

        public double[,] ModelStates(int[] ids, int layers)
        {
            using var x = tensor(ids.Select(i => (long)i).ToArray(), 1, ids.Length);
            using var mask = ones_like(x);
            using var h = Model.HiddenStates(x, mask, layers);
            return Rows(h, 0, ids.Length);
        }

        public void AssertMatches(int[] ids, int layers)
        {
            var diff = MaxAbsDiff(Oracle.HiddenStates(ids, layers), ModelStates(ids, layers));
            Assert.True(diff <= Tolerance, $"{Model.Config.ModelType} layer {layers}: max |diff| {diff:E3} exceeds {Tolerance:E0}.");
        }

        /// <summary>The loaded model computes exactly what this fixture's model computes, at every layer.</summary>
        public void AssertSameStates(TransformerEncoder other)
        {
            var ids = Tokens(8, seed: 77);
            using var x = tensor(ids.Select(i => (long)i).ToArray(), 1, ids.Length);
            using var mask = ones_like(x);
            for (var l = 0; l <= Model.Config.NumHiddenLayers; l++)
            {
                using var a = Model.HiddenStates(x, mask, l);
                using var b = other.HiddenStates(x, mask, l);
                Assert.True(Same(a, b), $"layer {l} differs after loading the renamed checkpoint");
            }
        }

        /// <summary>
        /// Rewrites the saved tensors under new names (<paramref name="rename"/> may drop a tensor by returning none)
        /// into a sibling folder with <paramref name="architecture"/>, plus <paramref name="extra"/> tensors; optionally
        /// drops the last row of one tensor.
        /// </summary>
        public string Rewrite(string architecture, Func<string, string[]> rename, Dictionary<string, Tensor> extra, string? resize = null)
        {
            var dir = Path.Combine(Dir, "rewritten-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "config.json")))!.AsObject();
            cfg["architectures"] = new JsonArray(architecture);
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            var tensors = ModelWeights.Load(Dir);
            var output = new Dictionary<string, Tensor>(extra, StringComparer.Ordinal);
            foreach (var (name, t) in tensors)
                foreach (var n in rename(name))
                    output[n] = name == resize ? t.narrow(0, 0, t.shape[0] - 1).contiguous() : t;
            SafeTensors.SaveFile(Path.Combine(dir, "model.safetensors"), output);
            foreach (var t in tensors.Values.Concat(output.Values).Distinct(ReferenceEqualityComparer.Instance)) ((Tensor)t!).Dispose();
            return dir;
        }

        public void Dispose()
        {
            Model.Dispose();
            TryDelete(Dir);
        }
    }

    /// <summary>LayerNorm weights around 1 and nonzero biases, so a dropped weight or bias shows in the states.</summary>
    static void RandomiseNormsAndBiases(TransformerEncoder m, long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in m.named_parameters())
        {
            var isNormWeight = name.EndsWith("LayerNorm.weight", StringComparison.Ordinal) || name.EndsWith("layer_norm.weight", StringComparison.Ordinal)
                || name.EndsWith("layernorm_embedding.weight", StringComparison.Ordinal);
            if (!isNormWeight && !name.EndsWith(".bias", StringComparison.Ordinal)) continue;
            using var r = randn(p.shape, ScalarType.Float32, generator: gen);
            p.copy_(isNormWeight ? r * 0.3 + 1.0 : r * 0.5);
        }
    }

    /// <summary>Random ids that are never a special or pad token (ids 0–2 are reserved in every layout used here).</summary>
    static int[] Tokens(int count, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => rng.Next(3, Vocab))];
    }

    static double[,] Rows(Tensor states, int batchIndex, int count)
    {
        using var row = states[batchIndex].to(ScalarType.Float64).contiguous();
        var data = row.data<double>().ToArray();
        var hidden = (int)states.shape[2];
        var result = new double[count, hidden];
        for (var i = 0; i < count; i++)
            for (var j = 0; j < hidden; j++) result[i, j] = data[i * hidden + j];
        return result;
    }

    static double MaxAbsDiff(double[,] a, double[,] b)
    {
        Assert.Equal(a.GetLength(0), b.GetLength(0));
        Assert.Equal(a.GetLength(1), b.GetLength(1));
        double max = 0;
        for (var i = 0; i < a.GetLength(0); i++)
            for (var j = 0; j < a.GetLength(1); j++) max = Math.Max(max, Math.Abs(a[i, j] - b[i, j]));
        return max;
    }

    static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    static string TempDir() => Path.Combine(Path.GetTempPath(), $"refalign-encoder-{Guid.NewGuid():N}");

    static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
