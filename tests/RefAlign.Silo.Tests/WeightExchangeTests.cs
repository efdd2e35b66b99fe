using System.IO.Hashing;
using System.Net;
using RefAlign.Runtime;
using RefAlign.Compute.Formats;
using static TorchSharp.torch;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The silo's TCP weight server: what a generator fetches is bit-identical, and only the current token works; the digest
/// it is checked against is a tree of XXH3-128 block digests, the same whole or as the bytes land.
/// </summary>
public sealed class WeightExchangeTests
{
    [Fact]
    public async Task Published_weights_stream_bit_exactly_and_stale_addresses_are_refused()
    {
        await using var servers = new WeightServers();
        var exchange = await servers.StartAsync();

        using var a = randn(1000, 517);
        using var b = randn(33).to(ScalarType.BFloat16);
        var snapshot = WeightSnapshot.Capture([("a", a), ("b", b)]);
        var address = exchange.Publish("run-1", 3, snapshot);
        Assert.NotNull(address);

        var fetched = await WeightExchange.FetchAsync(address!, snapshot.TotalBytes);
        Assert.Equal(snapshot.Data, fetched);
        Assert.Same(snapshot, exchange.FindLocal(address!));

        // Two versions can be published at once (a pipelined run's generators sample one behind the learner); a
        // retracted version's address is refused, and so is a wrong expected length.
        var newer = exchange.Publish("run-1", 4, snapshot);
        Assert.Same(snapshot, exchange.FindLocal(address!));
        exchange.Retract("run-1", 3);
        Assert.Null(await WeightExchange.FetchAsync(address!, snapshot.TotalBytes));
        Assert.Null(await WeightExchange.FetchAsync(newer!, snapshot.TotalBytes - 1));
        Assert.Null(exchange.FindLocal(address!));
        Assert.Equal(snapshot.Data, await WeightExchange.FetchAsync(newer!, snapshot.TotalBytes));
        exchange.Remove("run-1");
        Assert.Null(exchange.FindLocal(newer!));
    }

    [Fact]
    public async Task The_weight_digest_is_an_xxh128_tree_of_the_bytes_whole_or_as_they_land_and_one_flipped_byte_changes_it()
    {
        // 9 MB: two whole blocks and a short one.
        using var a = randn(1500, 1500);
        var snapshot = WeightSnapshot.Capture([("a", a)]);
        var digest = snapshot.Digest();
        byte[] leaves = [.. snapshot.Data.Chunk(WeightDigest.BlockBytes).SelectMany(b => XxHash128.Hash(b)), .. BitConverter.GetBytes(snapshot.TotalBytes)];
        Assert.Equal(3, WeightDigest.BlockCount(snapshot.TotalBytes));
        Assert.Equal("xxh128t:" + Convert.ToHexStringLower(XxHash128.Hash(leaves)), digest);

        // Hashed slice by slice while a writer fills the buffer, as a replica does while the stream lands.
        var landed = new FillProgress();
        var hashing = landed.DigestAsync(snapshot.Data, snapshot.TotalBytes, CancellationToken.None);
        for (long at = 0; at < snapshot.TotalBytes; at += 7_777) landed.Advance(Math.Min(snapshot.TotalBytes, at + 7_777));
        Assert.Equal(digest, await hashing);

        var flipped = (byte[])snapshot.Data.Clone();
        flipped[flipped.Length / 2] ^= 0x01;
        Assert.NotEqual(digest, new WeightSnapshot(snapshot.Entries, flipped).Digest());
        // A cut stream's bytes (the blocks it did bring) never match the whole's root: the length is in it.
        var cut = snapshot.Data[..(2 * WeightDigest.BlockBytes)];
        Assert.NotEqual(digest, WeightDigest.Of(cut));
    }
}
