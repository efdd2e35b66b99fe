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
