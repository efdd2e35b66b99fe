using RefAlign.Compute.Encoders;
using RefAlign.Compute.Tokenization;
using static TorchSharp.torch;

namespace RefAlign.Compute.BertScore;

/// <summary>
/// BERTScore (docs/algorithms.md §4): L2-normalised token vectors from the first L encoder layers, greedy cosine matching,
/// P = Σ w(h)·max sim / Σ w(h), R likewise over the reference, F = 2PR/(P+R), NaN → 0. Padding never takes part
/// in a max, so batch size and order cannot change a score.
/// </summary>
public sealed class BertScorer(TransformerEncoder encoder, EncoderTokenizer tokenizer, int layers) : IDisposable
{
    public int Layers { get; } = layers >= 0 && layers <= encoder.Config.NumHiddenLayers
        ? layers
        : throw new ArgumentException($"num_layers must be in 0..{encoder.Config.NumHiddenLayers} (got {layers}).", nameof(layers));

    public EncoderTokenizer Tokenizer => tokenizer;

    /// <summary>Encoder passes run so far (tests and benchmarks read it).</summary>
    public int EncoderPasses { get; private set; }

    /// <summary>Loads an encoder folder; the layer defaults to bert_score's choice for known names, else layers − 1.</summary>
    public static BertScorer FromPretrained(string folder, int? layers = null, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        // The tokenizer opens its files itself: every file of the folder is checked inside a silo's roots first.
        Files.ReadRoots.Current.CheckFolder(folder);
        var tok = EncoderTokenizer.Load(folder);
        var enc = TransformerEncoder.FromPretrained(folder, dtype, device);
        var l = layers ?? BertScoreLayers.Find(folder) ?? Math.Max(1, enc.Config.NumHiddenLayers - 1);
        try { return new BertScorer(enc, tok, l); }
        catch { enc.Dispose(); throw; } // a layer out of range must not leak the loaded encoder
    }

    public IReadOnlyList<BertScoreResult> Score(IReadOnlyList<string> candidates, IReadOnlyList<string> references,
        BertScoreOptions? options = null)
    {
        if (candidates.Count != references.Count)
            throw new ArgumentException($"candidates ({candidates.Count}) and references ({references.Count}) counts differ.");
        return Score(candidates, [.. references.Select(r => (IReadOnlyList<string>)[r])], options);
    }

    public IReadOnlyList<BertScoreResult> Score(IReadOnlyList<string> candidates,
        IReadOnlyList<IReadOnlyList<string>> references, BertScoreOptions? options = null)
    {
        options ??= new BertScoreOptions();
        options.Validate();
        if (candidates.Count != references.Count)
            throw new ArgumentException($"candidates ({candidates.Count}) and references ({references.Count}) counts differ.");
        for (var i = 0; i < references.Count; i++)
            if (references[i].Count == 0) throw new ArgumentException($"candidate {i} has no reference.");

        var ids = new Dictionary<string, int[]>(StringComparer.Ordinal);
        foreach (var s in candidates.Concat(references.SelectMany(r => r)))
            if (!ids.ContainsKey(s)) ids[s] = tokenizer.EncodeForScoring(s);
        // idf over options.IdfReferences when given (only tokenised, never embedded), else over the references scored.
        var weights = options.Idf
            ? IdfWeights.FromReferences(
                (options.IdfReferences ?? [.. references.SelectMany(r => r)])
                    .Select(r => ids.TryGetValue(r, out var known) ? known : tokenizer.EncodeForScoring(r)),
                tokenizer.ClsId, tokenizer.SepId)
            : IdfWeights.Uniform(tokenizer.ClsId, tokenizer.SepId);
        var (packed, offsets) = Embed(ids, options.BatchSize);
        using (packed)
        {
            var pairs = new List<(int Cand, string Hyp, string Ref)>();
            for (var i = 0; i < candidates.Count; i++)
                foreach (var r in references[i]) pairs.Add((i, candidates[i], r));
            var scores = ScorePairs(pairs, ids, packed, offsets, weights, PairBatch(options.BatchSize));
            var results = new BertScoreResult[candidates.Count];
            var k = 0;
            for (var i = 0; i < candidates.Count; i++)
            {
                var group = scores.Skip(k).Take(references[i].Count).ToList();
                k += references[i].Count;
                var best = options.MultiReference == MultiReferenceMode.BestF
                    ? group.MaxBy(s => s.F1)!
                    : new BertScoreResult(group.Max(s => s.Precision), group.Max(s => s.Recall), group.Max(s => s.F1));
                results[i] = options.Baseline?.Apply(best) ?? best;
            }
            return results;
        }
    }

    /// <summary>
    /// Normalised token vectors of every distinct sentence, batched longest first, packed into one table
    /// [1 + total tokens, hidden] whose row 0 is zeros (padding); <c>offsets</c> gives each sentence's first row.
    /// One table and index gathers keep the per-sentence and per-pair work to a few large ops.
    /// </summary>
    (Tensor Packed, Dictionary<string, long> Offsets) Embed(Dictionary<string, int[]> ids, int batchSize)
    {
        var offsets = new Dictionary<string, long>(StringComparer.Ordinal);
        var order = ids.Keys.OrderByDescending(s => ids[s].Length).ThenBy(s => s, StringComparer.Ordinal).ToList();
        var chunks = new List<Tensor>();
        long next = 1;
        using var _ = no_grad();
        try
        {
            for (var start = 0; start < order.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var batch = order.Skip(start).Take(batchSize).ToList();
                var len = ids[batch[0]].Length;
                var input = new long[batch.Count * len];
                var mask = new long[input.Length];
                var real = new List<long>();
                Array.Fill(input, tokenizer.PadId);
                for (var b = 0; b < batch.Count; b++)
                {
                    offsets[batch[b]] = next + real.Count;
                    for (var t = 0; t < ids[batch[b]].Length; t++)
                    {
                        input[b * len + t] = ids[batch[b]][t];
                        mask[b * len + t] = 1;
                        real.Add(b * len + t);
                    }
                }
                var hidden = encoder.HiddenStates(tensor(input, [batch.Count, len], device: encoder.Device),
                    tensor(mask, [batch.Count, len], device: encoder.Device), Layers).to(ScalarType.Float32);
                EncoderPasses++;
                var flat = hidden.reshape(-1, hidden.shape[^1]).index_select(0, tensor(real.ToArray(), device: encoder.Device));
                chunks.Add((flat / flat.norm(-1, keepdim: true)).MoveToOuterDisposeScope());
                next += real.Count;
            }
            var width = chunks.Count > 0 ? chunks[0].shape[1] : encoder.Config.HiddenSize;
            using var pad = zeros([1, width], device: encoder.Device);
            return (cat([pad, .. chunks], 0), offsets);
        }
        finally
        {
            foreach (var c in chunks) c.Dispose();
        }
    }

    /// <summary>
    /// Pairs matched per batch: the similarity matrices are small next to an encoder pass, so larger batches than the
    /// encoder's cut the per-batch op overhead (scores do not depend on the batch).
    /// </summary>
    static int PairBatch(int encoderBatch) => Math.Max(encoderBatch, 256);

    List<BertScoreResult> ScorePairs(List<(int Cand, string Hyp, string Ref)> pairs, Dictionary<string, int[]> ids,
        Tensor packed, Dictionary<string, long> offsets, IdfWeights weights, int batchSize)
    {
        var results = new List<BertScoreResult>(pairs.Count);
        var hidden = packed.shape[1];
        var dev = encoder.Device;
        using var _ = no_grad();
        for (var start = 0; start < pairs.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = pairs.Skip(start).Take(batchSize).ToList();
            var lh = batch.Max(p => ids[p.Hyp].Length);
            var lr = batch.Max(p => ids[p.Ref].Length);
            var hypMask = new bool[batch.Count * lh];
            var refMask = new bool[batch.Count * lr];
            var hypW = new float[batch.Count * lh];
            var refW = new float[batch.Count * lr];
            // Rows of the packed table to gather; padding points at row 0 (zeros) and is masked below.
            var hypRows = new long[batch.Count * lh];
            var refRows = new long[batch.Count * lr];
            for (var b = 0; b < batch.Count; b++)
            {
                var (_, h, r) = batch[b];
                for (var t = 0; t < ids[h].Length; t++)
                {
                    hypMask[b * lh + t] = true;
                    hypW[b * lh + t] = (float)weights[ids[h][t]];
                    hypRows[b * lh + t] = offsets[h] + t;
                }
                for (var t = 0; t < ids[r].Length; t++)
                {
                    refMask[b * lr + t] = true;
                    refW[b * lr + t] = (float)weights[ids[r][t]];
                    refRows[b * lr + t] = offsets[r] + t;
                }
            }
            var hyp = packed.index_select(0, tensor(hypRows, device: dev)).view(batch.Count, lh, hidden);
            var rf = packed.index_select(0, tensor(refRows, device: dev)).view(batch.Count, lr, hidden);
            var sim = hyp.bmm(rf.transpose(1, 2));
            // −2 is below every cosine, so padded positions never win a max.
            var precisionPerToken = sim.masked_fill(tensor(Not(refMask), [batch.Count, 1, lr], device: dev), -2.0).max(2).values;
            var recallPerToken = sim.masked_fill(tensor(Not(hypMask), [batch.Count, lh, 1], device: dev), -2.0).max(1).values;
            var wh = tensor(hypW, [batch.Count, lh], device: dev);
            var wr = tensor(refW, [batch.Count, lr], device: dev);
            var p = ((precisionPerToken * wh).sum(1) / wh.sum(1)).to(ScalarType.Float64).cpu().data<double>().ToArray();
            var r2 = ((recallPerToken * wr).sum(1) / wr.sum(1)).to(ScalarType.Float64).cpu().data<double>().ToArray();
            for (var b = 0; b < batch.Count; b++)
            {
                // bert_score's zero masks: an empty candidate or reference (CLS + SEP only) scores P = R = F = 0, not just
                // the side whose weights sum to 0 (the other side's max over CLS/SEP would otherwise leave R or P > 0).
                if (ids[batch[b].Hyp].Length <= 2 || ids[batch[b].Ref].Length <= 2)
                {
                    results.Add(new BertScoreResult(0, 0, 0));
                    continue;
                }
                double pb = double.IsNaN(p[b]) ? 0 : p[b], rb = double.IsNaN(r2[b]) ? 0 : r2[b];
                var f = 2 * pb * rb / (pb + rb);
                results.Add(new BertScoreResult(pb, rb, double.IsNaN(f) ? 0 : f));
            }
        }
        return results;
    }

    /// <summary>The padding positions of a mask, negated on the host (one op fewer on the device).</summary>
    static bool[] Not(bool[] mask) => [.. mask.Select(m => !m)];

    public void Dispose() => encoder.Dispose();
}
