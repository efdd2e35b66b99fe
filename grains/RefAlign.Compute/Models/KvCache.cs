using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>
/// One layer's preallocated key/value buffer [B, kv_heads, capacity, head_dim]. Appending writes in place, so a
/// generation step costs O(new tokens) copies instead of re-concatenating the whole history. Only the first
/// <see cref="Rows"/> rows are live: <see cref="MoveRows"/> packs survivors to the front when a batch shrinks.
/// </summary>
public sealed class LayerKvCache : IDisposable
{
    readonly Tensor _k, _v;
    // Views of the live rows, remade only when the batch shrinks: one op less per buffer and step.
    Tensor _kRows = null!, _vRows = null!;

    public LayerKvCache(long batch, long kvHeads, long capacity, long headDim, ScalarType dtype, Device device)
    {
        // Owned by the cache, not by whatever dispose scope is open when it is made.
        _k = zeros([batch, kvHeads, capacity, headDim], dtype, device).DetachFromDisposeScope();
        _v = zeros([batch, kvHeads, capacity, headDim], dtype, device).DetachFromDisposeScope();
        SetRows(batch);
    }

    public long Length { get; private set; }

    /// <summary>Live rows: the batch a forward pass over this cache must have.</summary>
    public long Rows { get; private set; }

    /// <summary>A cache holding this one's rows <paramref name="times"/> over ([rows…, rows…]), with room for <paramref name="capacity"/> positions.</summary>
    public LayerKvCache Tiled(int times, long capacity)
    {
        var tiled = new LayerKvCache(Rows * times, _k.shape[1], capacity, _k.shape[3], _k.dtype, _k.device);
        using (no_grad())
        {
            tiled._k.narrow(2, 0, Length).copy_(Live(_k).repeat(times, 1, 1, 1));
            tiled._v.narrow(2, 0, Length).copy_(Live(_v).repeat(times, 1, 1, 1));
        }
        tiled.Length = Length;
        return tiled;
    }

    /// <summary>A cache whose row i is this one's row <paramref name="rows"/>[i], with room for <paramref name="capacity"/> positions.</summary>
    public LayerKvCache Gathered(Tensor rows, long capacity)
    {
        var gathered = new LayerKvCache(rows.shape[0], _k.shape[1], capacity, _k.shape[3], _k.dtype, _k.device);
        using (no_grad())
        {
            gathered._k.narrow(2, 0, Length).copy_(Live(_k).index_select(0, rows));
            gathered._v.narrow(2, 0, Length).copy_(Live(_v).index_select(0, rows));
        }
        gathered.Length = Length;
        return gathered;
    }

    /// <summary>
    /// Shrinks the live batch to <paramref name="rows"/> rows after copying, for each i, row <paramref name="from"/>[i]
    /// onto row <paramref name="to"/>[i] (int64 indices): filling the holes of dropped rows from the end costs one row
    /// copy per dropped row, not a copy of the whole cache.
    /// </summary>
    public void MoveRows(Tensor from, Tensor to, long rows)
    {
        if (from.shape[0] > 0)
            using (no_grad())
            {
                using (var k = Live(_k).index_select(0, from)) _k.narrow(2, 0, Length).index_copy_(0, to, k);
                using (var v = Live(_v).index_select(0, from)) _v.narrow(2, 0, Length).index_copy_(0, to, v);
            }
        SetRows(rows);
    }

    void SetRows(long rows)
    {
        _kRows?.Dispose();
        _vRows?.Dispose();
        Rows = rows;
        _kRows = _k.narrow(0, 0, rows).DetachFromDisposeScope();
        _vRows = _v.narrow(0, 0, rows).DetachFromDisposeScope();
    }

    public (Tensor K, Tensor V) Append(Tensor k, Tensor v)
    {
        var t = k.shape[2];
        if (Length + t > _k.shape[2])
            throw new InvalidOperationException($"KV cache capacity {_k.shape[2]} exceeded ({Length} + {t}).");
        if (k.shape[0] != Rows)
            throw new InvalidOperationException($"KV cache holds {Rows} rows but the input has {k.shape[0]}.");
        using (no_grad())
        {
            _kRows.narrow(2, Length, t).copy_(k);
            _vRows.narrow(2, Length, t).copy_(v);
        }
        Length += t;
        return (_kRows.narrow(2, 0, Length), _vRows.narrow(2, 0, Length));
    }

    Tensor Live(Tensor buffer) => buffer.narrow(0, 0, Rows).narrow(2, 0, Length);

    public void Dispose()
    {
        _kRows.Dispose();
        _vRows.Dispose();
        _k.Dispose();
        _v.Dispose();
    }
}

/// <summary>The cache of every layer, created for a batch and a maximum total length.</summary>
public sealed class KvCache : IDisposable
{
    readonly LayerKvCache[] _layers;

    public KvCache(CausalLmConfig c, long batch, long capacity, ScalarType dtype, Device device)
    {
        _layers = [.. Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => new LayerKvCache(batch, c.NumKeyValueHeads, capacity, c.HeadDim, dtype, device))];
    }

    KvCache(LayerKvCache[] layers) => _layers = layers;

    /// <summary>
    /// This cache's rows <paramref name="times"/> over, in blocks ([rows…, rows…]), with room for
    /// <paramref name="capacity"/> positions: a prefix computed once, continued by several completions.
    /// </summary>
    public KvCache Tiled(int times, long capacity) => new([.. _layers.Select(l => l.Tiled(times, capacity))]);

    /// <summary>
    /// A cache whose row i copies this one's row <paramref name="rows"/>[i] (int64 indices), with room for
    /// <paramref name="capacity"/> positions: e.g. each prompt's prefix repeated for its K samples.
    /// </summary>
    public KvCache Gathered(Tensor rows, long capacity) => new([.. _layers.Select(l => l.Gathered(rows, capacity))]);

    /// <summary>Moves row <paramref name="from"/>[i] onto row <paramref name="to"/>[i] in every layer, then keeps the first <paramref name="rows"/>.</summary>
    public void MoveRows(Tensor from, Tensor to, long rows)
    {
        foreach (var l in _layers) l.MoveRows(from, to, rows);
    }

    public long Length => _layers[0].Length;

    public long Rows => _layers[0].Rows;

    public LayerKvCache this[int layer] => _layers[layer];

    public void Dispose()
    {
        foreach (var l in _layers) l.Dispose();
    }
}
