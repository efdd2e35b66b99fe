namespace RefAlign.Compute.Tokenization.SentencePiece;

/// <summary>
/// A trie over byte strings mapping each key to a value (a piece id). Walking it one byte at a time gives every key
/// that is a prefix of a text in order of length, which is how the library's double-array trie is queried.
/// </summary>
internal sealed class ByteTrie
{
    readonly Dictionary<long, int> _children = [];
    readonly List<int> _values = [-1];

    public const int Root = 0;

    public int Count { get; private set; }

    /// <summary>Adds <paramref name="key"/> unless present; returns false when it was there already.</summary>
    public bool Add(ReadOnlySpan<byte> key, int value)
    {
        var node = Root;
        foreach (var b in key)
        {
            if (!_children.TryGetValue(Edge(node, b), out var next))
            {
                next = _values.Count;
                _values.Add(-1);
                _children[Edge(node, b)] = next;
            }
            node = next;
        }
        if (_values[node] >= 0) return false;
        _values[node] = value;
        Count++;
        return true;
    }

    /// <summary>The child of <paramref name="node"/> along <paramref name="b"/>, or -1.</summary>
    public int Step(int node, byte b) => _children.TryGetValue(Edge(node, b), out var next) ? next : -1;

    /// <summary>The value stored at <paramref name="node"/>, or -1 when no key ends there.</summary>
    public int ValueAt(int node) => _values[node];

    /// <summary>Length of the longest key that is a prefix of <paramref name="text"/> (0 when none).</summary>
    public int LongestPrefix(ReadOnlySpan<byte> text)
    {
        int node = Root, longest = 0;
        for (var i = 0; i < text.Length && (node = Step(node, text[i])) >= 0; i++)
            if (_values[node] >= 0) longest = i + 1;
        return longest;
    }

    static long Edge(int node, byte b) => ((long)node << 8) | b;
}
