namespace RefAlign.Compute.Tokenization.SentencePiece;

/// <summary>A piece of the normalized text: its bytes [Start, Start + Length) and id (the unknown id when not in the vocabulary).</summary>
internal readonly record struct Segment(int Start, int Length, int Id);

/// <summary>
/// BPE as sentencepiece's bpe_model.cc encodes: split into characters (user-defined symbols whole and frozen), then
/// repeatedly merge the adjacent pair whose concatenation is a piece with the highest score; among equal scores the
/// leftmost pair wins. Stale agenda entries are recognised by size, as there. Merges that produce an UNUSED piece
/// are undone at the end along the split recorded last for that piece.
/// </summary>
internal static class BpeEncoder
{
    readonly record struct Pair(int Left, int Right, float Score, int Size);

    // The library's agenda is a max-heap on (score, then smaller left index).
    sealed class Agenda : IComparer<Pair>
    {
        public static readonly Agenda Order = new();
        public int Compare(Pair a, Pair b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left);
    }

    public static List<Segment> Encode(SentencePieceModel model, byte[] text)
    {
        var output = new List<Segment>();
        if (text.Length == 0) return output;
        var chars = SentencePieceModel.Latin1(text).AsSpan(); // byte i is chars[i]: spans look pieces up without copying
        var start = new int[text.Length];
        var size = new int[text.Length];
        var frozen = new bool[text.Length];
        var count = 0;
        for (var pos = 0; pos < text.Length; count++)
        {
            var n = model.PrefixMatch(text.AsSpan(pos), out frozen[count]);
            start[count] = pos;
            size[count] = n;
            pos += n;
        }
        var prev = new int[count];
        var next = new int[count];
        for (var i = 0; i < count; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }
        var agenda = new PriorityQueue<Pair, Pair>(count, Agenda.Order);
        Dictionary<string, int>? reverseMerges = null; // unused piece → length of its left part

        for (var i = 1; i < count; i++) MaybeAdd(i - 1, i, chars);
        while (agenda.TryDequeue(out var top, out _))
        {
            if (size[top.Left] == 0 || size[top.Right] == 0 || size[top.Left] + size[top.Right] != top.Size) continue;
            size[top.Left] += size[top.Right];
            next[top.Left] = next[top.Right];
            if (next[top.Right] >= 0) prev[next[top.Right]] = top.Left;
            size[top.Right] = 0;
            MaybeAdd(prev[top.Left], top.Left, chars);
            MaybeAdd(top.Left, next[top.Left], chars);
        }

        var offset = 0;
        for (var i = 0; i >= 0; i = next[i]) Resegment(start[i], size[i], chars);
        return output;

        void MaybeAdd(int left, int right, ReadOnlySpan<char> chars)
        {
            if (left < 0 || right < 0 || frozen[left] || frozen[right]) return;
            var span = chars.Slice(start[left], size[left] + size[right]);
            var id = model.NormalPieceId(span);
            if (id < 0) return;
            var pair = new Pair(left, right, model.Pieces[id].Score, span.Length);
            agenda.Enqueue(pair, pair);
            if (model.Pieces[id].Type == PieceType.Unused) (reverseMerges ??= new(StringComparer.Ordinal))[span.ToString()] = size[left];
        }

        void Resegment(int from, int length, ReadOnlySpan<char> chars)
        {
            var span = chars.Slice(from, length);
            var id = model.PieceToId(span);
            if (model.Pieces[id].Type == PieceType.Unused && reverseMerges is not null && reverseMerges.TryGetValue(span.ToString(), out var left))
            {
                Resegment(from, left, chars);
                Resegment(from + left, length - left, chars);
                return;
            }
            output.Add(new Segment(offset, length, id));
            offset += length;
        }
    }
}

/// <summary>
/// Unigram as unigram_model.cc's EncodeOptimized (the library's default encoder): a Viterbi pass over byte positions
/// keeping the best path ending at each, with the library's arithmetic (piece scores added in double and stored in
/// float, the unknown penalty in float), a strictly-greater test (the first path found keeps a tie), user-defined
/// symbols scored <c>length·max_score − 0.1</c>, UNUSED pieces skipped, and one unknown node per character that no
/// single-character piece covers.
/// </summary>
internal static class UnigramEncoder
{
    const float UnkPenalty = 10.0f;

    public static List<Segment> Encode(SentencePieceModel model, byte[] text)
    {
        var output = new List<Segment>();
        var size = text.Length;
        if (size == 0) return output;
        var unkScore = model.MinScore - UnkPenalty;
        var bestScore = new float[size + 1];
        var startsAt = new int[size + 1];
        var ids = new int[size + 1];
        Array.Fill(startsAt, -1);
        Array.Fill(ids, -1);
        var trie = model.NormalPieces;
        for (var from = 0; from < size;)
        {
            var tillHere = bestScore[from];
            var hasSingleNode = false;
            var charLength = Math.Min(Utf8.OneCharLen(text[from]), size - from);
            var node = ByteTrie.Root;
            for (var pos = from; pos < size;)
            {
                node = trie.Step(node, text[pos]);
                pos++;
                if (node < 0) break;
                var id = trie.ValueAt(node);
                if (id < 0) continue;
                var piece = model.Pieces[id];
                if (piece.Type == PieceType.Unused) continue;
                var length = pos - from;
                double score = piece.Type == PieceType.UserDefined ? (double)(length * model.MaxScore) - 0.1 : piece.Score;
                var candidate = score + tillHere;
                if (startsAt[pos] == -1 || candidate > bestScore[pos])
                {
                    bestScore[pos] = (float)candidate;
                    startsAt[pos] = from;
                    ids[pos] = id;
                }
                if (length == charLength) hasSingleNode = true;
            }
            if (!hasSingleNode)
            {
                var end = from + charLength;
                var candidate = (float)(unkScore + tillHere);
                if (startsAt[end] == -1 || candidate > bestScore[end])
                {
                    bestScore[end] = candidate;
                    startsAt[end] = from;
                    ids[end] = model.UnkId;
                }
            }
            from += charLength;
        }
        for (var end = size; end > 0; end = startsAt[end]) output.Add(new Segment(startsAt[end], end - startsAt[end], ids[end]));
        output.Reverse();
        return output;
    }
}
