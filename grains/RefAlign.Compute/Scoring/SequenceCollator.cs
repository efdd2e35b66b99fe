namespace RefAlign.Compute.Scoring;

/// <summary>Which side padding goes on: left for generation and batched scoring of prompts, right as TRL collates.</summary>
public enum PaddingSide { Left, Right }

/// <summary>A padded batch of prompt ⊕ completion rows as plain arrays (row-major [rows, length]).</summary>
public sealed record CollatedBatch(int Rows, int Length, long[] InputIds, long[] AttentionMask, long[] CompletionMask)
{
    public long[][] InputIdRows => Split(InputIds);
    public long[][] CompletionMaskRows => Split(CompletionMask);

    long[][] Split(long[] a) => [.. Enumerable.Range(0, Rows).Select(r => a.AsSpan(r * Length, Length).ToArray())];
}

/// <summary>Truncation and padding of (prompt, completion) token rows, as docs/algorithms.md §1 defines them.</summary>
public static class SequenceCollator
{
    public static CollatedBatch Collate(IReadOnlyList<(int[] Prompt, int[] Completion)> rows, int padId, PaddingSide side)
    {
        var length = rows.Count == 0 ? 0 : rows.Max(r => r.Prompt.Length + r.Completion.Length);
        var ids = new long[rows.Count * length];
        var attn = new long[ids.Length];
        var comp = new long[ids.Length];
        Array.Fill(ids, padId);
        for (var r = 0; r < rows.Count; r++)
        {
            var (p, c) = rows[r];
            var start = r * length + (side == PaddingSide.Left ? length - p.Length - c.Length : 0);
            for (var i = 0; i < p.Length; i++) { ids[start + i] = p[i]; attn[start + i] = 1; }
            for (var i = 0; i < c.Length; i++)
            {
                ids[start + p.Length + i] = c[i];
                attn[start + p.Length + i] = 1;
                comp[start + p.Length + i] = 1;
            }
        }
        return new CollatedBatch(rows.Count, length, ids, attn, comp);
    }

    /// <summary>
    /// SFT packing: the (prompt, completion) examples, in order, laid end to end in rows of at most
    /// <paramref name="maxLength"/> tokens (a new row when the next example does not fit), right-padded. Here
    /// <see cref="CollatedBatch.AttentionMask"/> holds each token's example number within its row (1, 2, …; 0: padding),
    /// as <c>CausalLm.ForwardPacked</c> takes it.
    /// </summary>
    public static CollatedBatch Pack(IReadOnlyList<(int[] Prompt, int[] Completion)> examples, int maxLength, int padId)
    {
        var rows = new List<List<(int[] Prompt, int[] Completion)>>();
        var used = 0;
        foreach (var e in examples)
        {
            var n = e.Prompt.Length + e.Completion.Length;
            if (rows.Count == 0 || used + n > maxLength) { rows.Add([]); used = 0; }
            rows[^1].Add(e);
            used += n;
        }
        var length = rows.Count == 0 ? 0 : rows.Max(r => r.Sum(e => e.Prompt.Length + e.Completion.Length));
        var ids = new long[rows.Count * length];
        var segments = new long[ids.Length];
        var comp = new long[ids.Length];
        Array.Fill(ids, padId);
        for (var r = 0; r < rows.Count; r++)
        {
            var at = r * length;
            for (var k = 0; k < rows[r].Count; k++)
            {
                var (p, c) = rows[r][k];
                for (var i = 0; i < p.Length + c.Length; i++, at++)
                {
                    ids[at] = i < p.Length ? p[i] : c[i - p.Length];
                    segments[at] = k + 1;
                    // An example's first token is never predicted: nothing of its own precedes it.
                    comp[at] = i >= p.Length && i > 0 ? 1 : 0;
                }
            }
        }
        return new CollatedBatch(rows.Count, length, ids, segments, comp);
    }

    /// <summary>Chosen rows first, then rejected rows, in one batch (TRL's concatenated forward).</summary>
    public static CollatedBatch ConcatenatedPreference(IReadOnlyList<int[]> prompts, IReadOnlyList<int[]> chosen,
        IReadOnlyList<int[]> rejected, int padId, PaddingSide side = PaddingSide.Right)
    {
        if (prompts.Count != chosen.Count || prompts.Count != rejected.Count)
            throw new ArgumentException($"prompts ({prompts.Count}), chosen ({chosen.Count}) and rejected ({rejected.Count}) must have the same count.");
        var rows = prompts.Select((p, i) => (p, chosen[i])).Concat(prompts.Select((p, i) => (p, rejected[i]))).ToList();
        return Collate(rows, padId, side);
    }
}
