using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>
/// One layer's preallocated key/value buffer [B, kv_heads, capacity, head_dim]. Appending writes in place, so a
/// generation step costs O(new tokens) copies instead of re-concatenating the whole history.
/// </summary>
public sealed class LayerKvCache(long batch, long kvHeads, long capacity, long headDim, ScalarType dtype, Device device)
    : IDisposable
{
    readonly Tensor _k = zeros([batch, kvHeads, capacity, headDim], dtype, device);
    readonly Tensor _v = zeros([batch, kvHeads, capacity, headDim], dtype, device);

    public long Length { get; private set; }

    /// <summary>A cache holding this one's rows <paramref name="times"/> over ([rows…, rows…]), with room for <paramref name="capacity"/> positions.</summary>
    public LayerKvCache Tiled(int times, long capacity)
    {
        var tiled = new LayerKvCache(_k.shape[0] * times, _k.shape[1], capacity, _k.shape[3], _k.dtype, _k.device);
        using (no_grad())
        {
            tiled._k.narrow(2, 0, Length).copy_(_k.narrow(2, 0, Length).repeat(times, 1, 1, 1));
            tiled._v.narrow(2, 0, Length).copy_(_v.narrow(2, 0, Length).repeat(times, 1, 1, 1));
        }
        tiled.Length = Length;
        return tiled;
    }

    public (Tensor K, Tensor V) Append(Tensor k, Tensor v)
    {
        var t = k.shape[2];
        if (Length + t > _k.shape[2])
            throw new InvalidOperationException($"KV cache capacity {_k.shape[2]} exceeded ({Length} + {t}).");
        using (no_grad())
        {
            _k.narrow(2, Length, t).copy_(k);
            _v.narrow(2, Length, t).copy_(v);
        }
        Length += t;
        return (_k.narrow(2, 0, Length), _v.narrow(2, 0, Length));
    }

    public void Dispose()
    {
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

    public long Length => _layers[0].Length;

    public LayerKvCache this[int layer] => _layers[layer];

    public void Dispose()
    {
        foreach (var l in _layers) l.Dispose();
    }
}
