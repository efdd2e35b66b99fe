using RefAlign.Compute.BertScore;
using RefAlign.Compute.Data;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;

namespace RefAlign.Presets;

/// <summary>
/// Plain BPE trainer over pre-split words. Deterministic: the most frequent adjacent pair wins, ties go to the
/// ordinally smallest (left, right). Symbols are interned as ints so 2000 merges over a few hundred sentences
/// take well under a second even with a full recount per merge.
/// </summary>
internal static class BpeTrainer
{
    /// <summary>
    /// Learns up to <paramref name="maxMerges"/> merges. Each word is a sequence of initial symbols with a count.
    /// Stops early when every word is a single symbol. Returns the merges in the order they were learned.
    /// <paramref name="combine"/> names the merged symbol (plain concatenation by default; WordPiece drops the
    /// right side's "##").
    /// </summary>
    public static IReadOnlyList<(string Left, string Right)> Train(
        IEnumerable<(IReadOnlyList<string> Symbols, int Count)> words, int maxMerges, Func<string, string, string>? combine = null)
    {
        combine ??= string.Concat;
        var names = new List<string>();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        int Intern(string s)
        {
            if (!ids.TryGetValue(s, out var id)) { id = names.Count; names.Add(s); ids[s] = id; }
            return id;
        }

        var seqs = new List<List<int>>();
        var counts = new List<int>();
        foreach (var (symbols, count) in words)
        {
            if (symbols.Count < 2 || count <= 0) continue;
            seqs.Add(symbols.Select(Intern).ToList());
            counts.Add(count);
        }

        var merges = new List<(string, string)>();
        var pairCounts = new Dictionary<long, int>();
        while (merges.Count < maxMerges)
        {
            pairCounts.Clear();
            for (var w = 0; w < seqs.Count; w++)
            {
                var s = seqs[w];
                for (var i = 0; i + 1 < s.Count; i++)
                {
                    var key = ((long)s[i] << 32) | (uint)s[i + 1];
                    pairCounts[key] = pairCounts.GetValueOrDefault(key) + counts[w];
                }
            }

            long best = -1;
            var bestCount = 0;
            foreach (var (key, c) in pairCounts)
            {
                if (best < 0 || c > bestCount || (c == bestCount && Compare(key, best) < 0)) { best = key; bestCount = c; }
            }
            if (best < 0) break;

            int left = (int)(best >> 32), right = (int)(best & 0xFFFFFFFF);
            var merged = Intern(combine(names[left], names[right]));
            merges.Add((names[left], names[right]));
            foreach (var s in seqs) Apply(s, left, right, merged);
        }
        return merges;

        int Compare(long a, long b)
        {
            var c = string.CompareOrdinal(names[(int)(a >> 32)], names[(int)(b >> 32)]);
            return c != 0 ? c : string.CompareOrdinal(names[(int)(a & 0xFFFFFFFF)], names[(int)(b & 0xFFFFFFFF)]);
        }
    }

    private static void Apply(List<int> s, int left, int right, int merged)
    {
        var write = 0;
        for (var read = 0; read < s.Count; read++)
        {
            if (read + 1 < s.Count && s[read] == left && s[read + 1] == right) { s[write++] = merged; read++; }
            else s[write++] = s[read];
        }
        s.RemoveRange(write, s.Count - write);
    }
}
