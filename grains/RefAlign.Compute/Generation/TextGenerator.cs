using RefAlign.Compute.Models;
using static TorchSharp.torch;

namespace RefAlign.Compute.Generation;

/// <summary>
/// Batched sampling from a <see cref="CausalLm"/>: prompts are left-padded into one batch, each sampled K times,
/// decoded with a KV cache (or, for checking, by full recomputation), and every row stops at its own EOS.
/// Each row draws from its own random stream, seeded by (seed, prompt seed, sample index), so a prompt's samples do
/// not depend on which other prompts share the batch: sharding generation across workers changes nothing.
/// With the cache and <c>compact</c> on, each prompt is prefilled once and its cache copied to its K rows, and rows
/// that stop are dropped from the batch; every live row still draws exactly once per step from its own stream, so the
/// tokens equal those of the plain batch (compact off), which keeps all rows to the end.
/// </summary>
public static class TextGenerator
{
    /// <param name="onStepLogits">Optional hook receiving each step's next-token logits [live rows, V] (tests compare cache vs recompute).</param>
    /// <param name="compact">Share each prompt's prefill among its samples and drop finished rows (cached path only).</param>
    public static IReadOnlyList<GeneratedSequence> Generate(CausalLm model, IReadOnlyList<int[]> prompts,
        SamplingOptions options, IReadOnlyCollection<int> eosIds, int padId, bool useCache = true,
        Action<int, Tensor>? onStepLogits = null, CancellationToken cancellation = default,
        IReadOnlyList<long>? promptSeeds = null, bool compact = true)
    {
        options.Validate();
        if (prompts.Count == 0) return [];
        if (promptSeeds is not null && promptSeeds.Count != prompts.Count)
            throw new ArgumentException($"promptSeeds has {promptSeeds.Count} entries for {prompts.Count} prompts.", nameof(promptSeeds));
        var maxPrompt = prompts.Max(p => p.Length);
        for (var i = 0; i < prompts.Count; i++)
        {
            if (prompts[i].Length == 0) throw new ArgumentException($"prompt {i} is empty (no tokens).");
            if (prompts[i].Length + options.MaxNewTokens > model.Config.MaxPositionEmbeddings)
                throw new ArgumentException(
                    $"prompt {i} has {prompts[i].Length} tokens; with max_new_tokens {options.MaxNewTokens} it exceeds the model context (config.json field 'max_position_embeddings' = {model.Config.MaxPositionEmbeddings}).");
        }

        var k = options.NumSamples;
        var rows = prompts.Count * k;
        var total = maxPrompt + options.MaxNewTokens;
        // The attention mask of every position the run can reach, filled once: real prompt tokens and all generated
        // slots are 1 (finished rows keep sampling pads that nothing reads). Each step views its prefix.
        var ids = new long[rows * maxPrompt];
        var fullMask = new long[rows * total];
        for (var r = 0; r < rows; r++)
        {
            var p = prompts[r / k];
            var offset = maxPrompt - p.Length;
            for (var t = 0; t < maxPrompt; t++) ids[r * maxPrompt + t] = t < offset ? padId : p[t - offset];
            Array.Fill(fullMask, 1L, r * total + offset, total - offset);
        }

        var state = new DecodeState(rows, eosIds);
        var streams = Enumerable.Range(0, rows)
            .Select(r => new SplitMix64(SplitMix64.Mix(options.Seed, promptSeeds?[r / k] ?? r / k, r % k))).ToArray();
        using var noGrad = no_grad();
        var device = model.Device;
        var maskBuffer = tensor(fullMask, [rows, total], device: device);
        var allIds = tensor(ids, [rows, maxPrompt], device: device);
        try
        {
            if (useCache) DecodeCached(model, allIds, ref maskBuffer, maxPrompt, options, padId, compact, state, streams, onStepLogits, cancellation);
            else DecodeRecomputed(model, ref allIds, maskBuffer, maxPrompt, options, padId, state, streams, onStepLogits, cancellation);
        }
        finally
        {
            maskBuffer.Dispose();
            allIds.Dispose();
        }

        return [.. Enumerable.Range(0, rows).Select(r => new GeneratedSequence(r / k, r % k, [.. state.Tokens[r]], [.. state.LogProbs[r]],
            state.Finished[r] ? FinishReason.Eos : FinishReason.Length))];
    }

    /// <summary>What the rows have produced so far, and which rows are still live (in batch order).</summary>
    sealed class DecodeState(int rows, IReadOnlyCollection<int> eosIds)
    {
        public readonly List<int>[] Tokens = [.. Enumerable.Range(0, rows).Select(_ => new List<int>())];
        public readonly List<float>[] LogProbs = [.. Enumerable.Range(0, rows).Select(_ => new List<float>())];
        public readonly bool[] Finished = new bool[rows];
        public int[] Live = [.. Enumerable.Range(0, rows)];
        readonly HashSet<int> _eos = [.. eosIds];

        public bool AllFinished => Live.All(r => Finished[r]);

        /// <summary>Samples one token per live row from <paramref name="logits"/> [live, V] and records it; returns the ids fed next (pads for finished rows).</summary>
        public long[] Sample(Tensor logits, SamplingOptions options, SplitMix64[] streams, int padId)
        {
            using var scope = NewDisposeScope();
            var logProbs = logits.log_softmax(-1);
            var next = options.Temperature == 0
                ? logits.argmax(-1, keepdim: true)
                : SampleInverseCdf(LogitsWarpers.Apply(logits, options), streams, Live);
            var chosenLogp = logProbs.gather(1, next).squeeze(1).cpu().data<float>().ToArray();
            var nextIds = next.squeeze(1).cpu().data<long>().ToArray();
            for (var i = 0; i < Live.Length; i++)
            {
                var r = Live[i];
                if (Finished[r]) { nextIds[i] = padId; continue; }
                Tokens[r].Add((int)nextIds[i]);
                LogProbs[r].Add(chosenLogp[i]);
                if (_eos.Contains((int)nextIds[i])) Finished[r] = true;
            }
            return nextIds;
        }
    }

    /// <summary>Cached decoding: one prefill, then one token per live row per step.</summary>
    static void DecodeCached(CausalLm model, Tensor allIds, ref Tensor maskBuffer, int maxPrompt, SamplingOptions options,
        int padId, bool compact, DecodeState state, SplitMix64[] streams, Action<int, Tensor>? onStepLogits, CancellationToken cancellation)
    {
        var k = options.NumSamples;
        var device = allIds.device;
        var total = maxPrompt + options.MaxNewTokens;
        var share = compact && k > 1;
        KvCache? cache = null;
        long[] nextIds;
        try
        {
            using (var scope = NewDisposeScope())
            {
                cancellation.ThrowIfCancellationRequested();
                var logits = Prefill(model, allIds, maskBuffer, maxPrompt, total, share ? k : 1, out cache);
                onStepLogits?.Invoke(0, logits);
                nextIds = state.Sample(logits, options, streams, padId);
            }
            for (var step = 1; step < options.MaxNewTokens && !state.AllFinished; step++)
            {
                cancellation.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                if (compact && state.Live.Any(r => state.Finished[r])) nextIds = DropFinished(state, nextIds, cache, ref maskBuffer);
                using var input = tensor(nextIds, [nextIds.Length, 1], device: device);
                var logits = model.Forward(input, maskBuffer.narrow(1, 0, maxPrompt + step), cache, lastOnly: true)
                    .squeeze(1).to(ScalarType.Float32);
                onStepLogits?.Invoke(step, logits);
                nextIds = state.Sample(logits, options, streams, padId);
            }
        }
        finally
        {
            cache?.Dispose();
        }
    }

    /// <summary>
    /// Runs the prompts through the model once and returns the first step's logits [rows, V] and a cache for all rows.
    /// With <paramref name="share"/> K > 1 only the first row of each prompt's K is computed, then copied K times.
    /// </summary>
    static Tensor Prefill(CausalLm model, Tensor allIds, Tensor maskBuffer, int maxPrompt, int total, int share, out KvCache cache)
    {
        using var scope = NewDisposeScope();
        var rows = allIds.shape[0];
        var mask = maskBuffer.narrow(1, 0, maxPrompt);
        if (share == 1)
        {
            cache = model.NewCache(rows, total);
            return model.Forward(allIds, mask, cache, lastOnly: true).squeeze(1).to(ScalarType.Float32).MoveToOuterDisposeScope();
        }
        var firsts = arange(0, rows, share, dtype: ScalarType.Int64, device: allIds.device);
        // Same capacity as the batch cache, so the prefill attends over identically laid-out keys in both modes.
        using var prefix = model.NewCache(rows / share, total);
        var logits = model.Forward(allIds.index_select(0, firsts), mask.index_select(0, firsts), prefix, lastOnly: true)
            .squeeze(1).to(ScalarType.Float32);
        var owner = tensor(Enumerable.Range(0, (int)rows).Select(r => (long)(r / share)).ToArray(), device: allIds.device);
        cache = prefix.Gathered(owner, total);
        return logits.index_select(0, owner).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Removes finished rows from the batch, the cache and the mask, moving the last live rows into their places (batch
    /// order does not matter: each row keeps its own stream); returns the surviving rows' next ids in the new order.
    /// </summary>
    static long[] DropFinished(DecodeState state, long[] nextIds, KvCache? cache, ref Tensor maskBuffer)
    {
        var order = Enumerable.Range(0, state.Live.Length).ToArray();
        var n = order.Length;
        var from = new List<long>();
        var to = new List<long>();
        for (var i = 0; i < n; i++)
        {
            if (!state.Finished[state.Live[order[i]]]) continue;
            while (n > i + 1 && state.Finished[state.Live[order[n - 1]]]) n--;
            n--;
            if (n == i) break;
            order[i] = order[n];
            from.Add(n);
            to.Add(i);
        }
        using var fromIndex = tensor(from.ToArray(), device: maskBuffer.device);
        using var toIndex = tensor(to.ToArray(), device: maskBuffer.device);
        cache?.MoveRows(fromIndex, toIndex, n);
        using var keep = tensor(order.Take(n).Select(i => (long)i).ToArray(), device: maskBuffer.device);
        var mask = maskBuffer.index_select(0, keep).DetachFromDisposeScope();
        maskBuffer.Dispose();
        maskBuffer = mask;
        state.Live = [.. order.Take(n).Select(i => state.Live[i])];
        return [.. order.Take(n).Select(i => nextIds[i])];
    }

    /// <summary>The check path: every step recomputes the whole sequence, all rows kept to the end.</summary>
    static void DecodeRecomputed(CausalLm model, ref Tensor allIds, Tensor maskBuffer, int maxPrompt, SamplingOptions options,
        int padId, DecodeState state, SplitMix64[] streams, Action<int, Tensor>? onStepLogits, CancellationToken cancellation)
    {
        var rows = allIds.shape[0];
        for (var step = 0; step < options.MaxNewTokens && !state.AllFinished; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var logits = model.Forward(allIds, maskBuffer.narrow(1, 0, maxPrompt + step), null, lastOnly: true)
                .squeeze(1).to(ScalarType.Float32);
            onStepLogits?.Invoke(step, logits);
            var nextIds = state.Sample(logits, options, streams, padId);
            var newIds = cat([allIds, tensor(nextIds, [rows, 1], device: allIds.device)], 1).MoveToOuterDisposeScope();
            allIds.Dispose();
            allIds = newIds;
        }
    }

    /// <summary>
    /// One draw per live row by inverse CDF with that row's own uniform in (0, 1]: the first token whose cumulative mass reaches
    /// u·total. Filtered tokens have zero mass and are never chosen.
    /// </summary>
    static Tensor SampleInverseCdf(Tensor warpedLogits, SplitMix64[] streams, int[] live)
    {
        using var scope = NewDisposeScope();
        var cdf = warpedLogits.softmax(-1).to(ScalarType.Float64).cumsum(-1);
        var u = new double[live.Length];
        for (var i = 0; i < u.Length; i++) u[i] = streams[live[i]].NextUnitExclusiveZero();
        var target = tensor(u, [u.Length, 1], device: cdf.device) * cdf.narrow(1, cdf.shape[1] - 1, 1);
        var index = (cdf < target).sum(-1, keepdim: true).clamp_max(cdf.shape[1] - 1);
        return index.MoveToOuterDisposeScope();
    }
}
