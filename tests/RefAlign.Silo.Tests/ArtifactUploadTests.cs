using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using RefAlign.Grains;
using RefAlign.Grains.Artifacts;
using RefAlign.Presets;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Pushes in progress on real files: the quota counts bytes received, not sizes announced, so headers alone reserve
/// nothing; pending pushes are listed, removable by name and expire; a push that fails, whatever the failure, frees what
/// it held.
/// </summary>
public sealed class ArtifactUploadTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-uploads-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    ArtifactStore Store(long maxStore = 1L << 40, int maxPending = 64, TimeSpan? expiry = null, string folder = "store") =>
        new(Path.Combine(_root, folder), 1L << 40, maxStore, maxPending, expiry);

    static string Sha(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    static void Validate(string name, string kind, string folder, IReadOnlyList<ArtifactFileRecord> files) => ArtifactValidation.Validate(name, kind, folder, files, 1L << 40);

    static ArtifactRecord Push(ArtifactStore store, string name, string kind, byte[] stream)
    {
        using var upload = store.BeginPush(name, kind, stream.Length, Sha(stream), 0);
        for (var o = 0; o < stream.Length; o += 4096)
        {
            var part = stream.AsSpan(o, Math.Min(4096, stream.Length - o));
            upload.Append(o, part, Sha(part));
        }
        return upload.Complete((k, folder, files) => Validate(name, k, folder, files));
    }

    /// <summary>A ustar stream of <paramref name="files"/> in the given order (the client never sends some of these).</summary>
    static byte[] Tar(params (string Path, byte[] Data)[] files)
    {
        using var bytes = new MemoryStream();
        using (var tar = new TarWriter(bytes, TarEntryFormat.Ustar, leaveOpen: true))
            foreach (var (path, data) in files)
                tar.WriteEntry(new UstarTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream(data) });
        return bytes.ToArray();
    }

    static byte[] TarOf(string folder)
    {
        using var tar = ArtifactStream.OfFolder(folder).OpenRead();
        using var bytes = new MemoryStream();
        tar.CopyTo(bytes);
        return bytes.ToArray();
    }

    [Fact]
    public void Headers_announcing_the_whole_quota_reserve_nothing_and_a_real_push_still_fits()
    {
        var data = Path.Combine(_root, "d");
        DemoData.WriteTo(data);
        var real = TarOf(Path.Combine(data, DemoData.PreferencesFileName));
        // The probe: eight pushes whose headers announce 1/8 of the store each, and no byte after them.
        var store = Store(maxStore: 8L * (1 << 20));
        for (var i = 0; i < 8; i++)
            store.BeginPush($"junk/{i}", "data", 1 << 20, Sha(Encoding.ASCII.GetBytes($"junk {i}")), 0).Dispose();
        Assert.Equal(8, store.Pending().Count);
        Assert.Equal(0, store.StoredBytes());
        var a = Push(store, "datasets/pairs", "data", real);
        Assert.Equal(real.Length, store.StoredBytes());
        Assert.Equal(a.Sha256, store.Get("datasets/pairs").Sha256);

        // Bytes do count: a push whose next chunk would pass the quota, now that another push's bytes were stored, is
        // refused at that chunk and keeps what it received.
        var tight = Store(maxStore: real.Length + 8192L, folder: "tight");
        using (var upload = tight.BeginPush("datasets/slow", "data", real.Length + 8192L, Sha(new byte[1]), 0))
        {
            var chunk = new byte[4096];
            upload.Append(0, chunk, Sha(chunk));
            Push(tight, "datasets/pairs", "data", real);
            var more = new byte[8192];
            var refused = Assert.Throws<ResourceExhaustedException>(() => upload.Append(4096, more, Sha(more)));
            Assert.Contains("Limits:MaxArtifactStoreBytes", refused.Message);
            Assert.Equal(4096, upload.Received);
        }
        Assert.Equal(4096, tight.Pending().Single(p => p.Name == "datasets/slow").ReceivedBytes);
    }

    [Fact]
    public void Pending_pushes_are_capped_listed_removable_by_name_and_expire()
    {
        var store = Store(maxPending: 2);
        store.BeginPush("models/a", "model", 1 << 20, Sha("a"u8), 0).Dispose();
        store.BeginPush("models/b", "model", 1 << 20, Sha("b"u8), 0).Dispose();
        var third = Assert.Throws<ResourceExhaustedException>(() => store.BeginPush("models/c", "model", 1 << 20, Sha("c"u8), 0));
        Assert.Contains("Limits:MaxPendingPushes", third.Message);
        Assert.Equal(["models/a", "models/b"], store.Pending().Select(p => p.Name).Order());
        // A pending name is removable as an artifact is (refalign artifact rm); the place it held is free again.
        var removed = store.Delete("models/a", _ => false);
        Assert.Equal("models/a", removed.Name);
        Assert.Empty(removed.Files);
        Assert.Equal(["models/b"], store.Pending().Select(p => p.Name));
        store.BeginPush("models/c", "model", 1 << 20, Sha("c"u8), 0).Dispose();
        Assert.Throws<ArtifactNotFoundException>(() => store.Delete("models/none", _ => false));

        // A push with no byte for the expiry is gone: its files and its place.
        var expiring = Store(maxPending: 2, expiry: TimeSpan.FromHours(1));
        foreach (var part in Directory.EnumerateFiles(Path.Combine(expiring.Root, "uploads")))
            File.SetLastWriteTimeUtc(part, DateTime.UtcNow - TimeSpan.FromHours(2));
        Assert.Empty(expiring.Pending());
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(expiring.Root, "uploads")));
        Assert.Equal(0, expiring.ReceivedBytes("models/b", Sha("b"u8)));
    }

    [Fact]
    public void A_tar_with_a_file_and_then_a_folder_of_the_same_name_is_invalid_and_frees_its_bytes()
    {
        var store = Store();
        var stream = Tar(("a", "first"u8.ToArray()), ("a/b", "second"u8.ToArray()));
        var e = Assert.Throws<InvalidArtifactException>(() => Push(store, "reports/ab", "report", stream));
        Assert.Contains("not a tar stream of plain files", e.Message);
        Assert.DoesNotContain(store.Root, e.Message);
        Assert.Empty(store.Pending());
        Assert.Equal(0, store.StoredBytes());
        Assert.Empty(store.List());
    }

    [Theory]
    [InlineData("hidden_size", 0)]
    [InlineData("num_hidden_layers", -3)]
    [InlineData("num_attention_heads", 0)]
    [InlineData("vocab_size", -1)]
    public void A_model_config_with_zero_or_negative_sizes_is_invalid_naming_the_field_and_frees_its_bytes(string field, int value)
    {
        var model = Path.Combine(_root, "m");
        ModelPresets.Initialize(model, "tiny", "llama", seed: 1);
        var configPath = Path.Combine(model, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config[field] = value;
        File.WriteAllText(configPath, config.ToJsonString());
        var store = Store();
        var e = Assert.Throws<InvalidArtifactException>(() => Push(store, "models/bad", "model", TarOf(model)));
        Assert.Contains($"'{field}'", e.Message);
        Assert.Empty(store.Pending());
        Assert.Equal(0, store.StoredBytes());
    }

    [Fact]
    public void A_model_too_large_for_the_limit_is_resource_exhausted_naming_its_sizes()
    {
        var model = Path.Combine(_root, "big");
        ModelPresets.Initialize(model, "tiny", "llama", seed: 1);
        var configPath = Path.Combine(model, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["num_hidden_layers"] = 40;
        config["hidden_size"] = 4096;
        config["intermediate_size"] = 16384;
        File.WriteAllText(configPath, config.ToJsonString());
        var store = Store();
        var stream = TarOf(model);
        using var upload = store.BeginPush("models/big", "model", stream.Length, Sha(stream), 0);
        upload.Append(0, stream, Sha(stream));
        var e = Assert.Throws<ResourceExhaustedException>(() => upload.Complete((kind, folder, files) => ArtifactValidation.Validate("models/big", kind, folder, files, 8L << 30)));
        Assert.Contains("hidden_size 4096", e.Message);
        Assert.Contains("num_hidden_layers 40", e.Message);
        Assert.Contains("Limits:MaxModelMemoryBytes", e.Message);
        Assert.Empty(store.Pending());
    }

    [Theory]
    [InlineData("models/x\n")]
    [InlineData("models/x\r\n")]
    [InlineData("\nmodels/x")]
    public void A_name_with_a_newline_is_refused(string name) =>
        Assert.Equal("name", Assert.Throws<InvalidArtifactException>(() => ArtifactStore.CheckName(name)).Field);
}
