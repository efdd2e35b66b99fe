using System.Security.Cryptography;
using System.Text.Json.Nodes;
using RefAlign.Compute.Data;
using RefAlign.Compute.Training;
using RefAlign.Grains;
using RefAlign.Grains.Artifacts;
using RefAlign.Presets;

namespace RefAlign.Silo.Tests;

/// <summary>
/// The artifact store on real files: pushes checked chunk by chunk and visible only when whole and valid, quotas
/// before a byte is stored, names, content addressing, and model validation with <c>refalign train</c>'s errors.
/// </summary>
public sealed class ArtifactStoreTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-artifacts-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    ArtifactStore Store(long maxArtifact = 1L << 40, long maxStore = 1L << 40) => new(Path.Combine(_root, "store"), maxArtifact, maxStore);

    /// <summary>The tar stream of a folder or file, as a client sends it.</summary>
    static byte[] Tar(string source)
    {
        using var tar = ArtifactStream.OfFolder(source).OpenRead();
        using var bytes = new MemoryStream();
        tar.CopyTo(bytes);
        return bytes.ToArray();
    }

    static string Sha(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    static void Validate(string name, string kind, string folder, IReadOnlyList<ArtifactFileRecord> files) => ArtifactValidation.Validate(name, kind, folder, files, 1L << 40);

    /// <summary>Pushes <paramref name="stream"/> in chunks of <paramref name="chunk"/> bytes from <paramref name="from"/>.</summary>
    static ArtifactRecord Push(ArtifactStore store, string name, string kind, byte[] stream, int chunk = 4096, long from = 0)
    {
        using var upload = store.BeginPush(name, kind, stream.Length, Sha(stream), from);
        for (var o = (int)from; o < stream.Length; o += chunk)
        {
            var part = stream.AsSpan(o, Math.Min(chunk, stream.Length - o));
            upload.Append(o, part, Sha(part));
        }
        return upload.Complete((k, folder, files) => Validate(name, k, folder, files));
    }

    string Model()
    {
        var dir = Path.Combine(_root, $"model-{Guid.NewGuid():N}");
        ModelPresets.Initialize(dir, "tiny", "llama", seed: 1);
        return dir;
    }

    [Fact]
    public void A_model_pushed_in_chunks_is_stored_content_addressed_and_its_stream_comes_back_bit_for_bit()
    {
        var model = Model();
        var stream = Tar(model);
        Assert.Equal(stream, Tar(model)); // the same files give the same bytes: the hash can be the address
        var store = Store();
        var a = Push(store, "models/tiny", "model", stream);
        Assert.Equal(Sha(stream), a.Sha256);
        Assert.Equal(stream.Length, a.Size);
        Assert.Equal(Directory.GetFiles(model).Select(Path.GetFileName).Order(StringComparer.Ordinal), a.Files.Select(f => f.Path));
        foreach (var f in a.Files)
            Assert.Equal(File.ReadAllBytes(Path.Combine(model, f.Path)), File.ReadAllBytes(Path.Combine(store.PathOf(a), f.Path)));
        var pulled = new MemoryStream();
        using (var tar = ArtifactStream.Of(store, a).OpenRead()) tar.CopyTo(pulled);
        Assert.Equal(stream, pulled.ToArray());
        Assert.Equal(stream.Length, ArtifactStream.Of(store, a).Size);

        // A second name for the same content stores nothing more; removing one name keeps the files for the other.
        var again = Push(store, "models/tiny-copy", "model", stream);
        Assert.Equal(a.Sha256, again.Sha256);
        Assert.Equal(stream.Length, store.StoredBytes());
        store.Delete("models/tiny", _ => false);
        Assert.True(Directory.Exists(store.PathOf(again)));
        Assert.Equal(["models/tiny-copy"], store.List().Select(x => x.Name));
        // The last name goes, and with it the files, unless a running run reads them.
        store.Delete("models/tiny-copy", folder => folder == store.PathOf(again));
        Assert.True(Directory.Exists(store.PathOf(again)));
        Push(store, "models/tiny", "model", stream);
        store.Delete("models/tiny", _ => false);
        Assert.False(Directory.Exists(store.PathOf(again)));
        Assert.Empty(store.List());
    }

    [Fact]
    public void An_interrupted_push_is_invisible_resumes_where_it_stopped_and_refuses_to_start_elsewhere()
    {
        var data = Path.Combine(_root, "data");
        DemoData.WriteTo(data);
        var file = Path.Combine(data, "references.jsonl");
        var stream = Tar(file);
        var store = Store();
        var half = stream.Length / 2 / 512 * 512;
        using (var upload = store.BeginPush("datasets/refs", "data", stream.Length, Sha(stream), 0))
        {
            upload.Append(0, stream.AsSpan(0, (int)half), Sha(stream.AsSpan(0, (int)half)));
            // The connection drops here: the upload is disposed without Complete.
        }
        Assert.Empty(store.List());
        Assert.Throws<ArtifactNotFoundException>(() => store.Get("datasets/refs"));
        Assert.Equal(half, store.ReceivedBytes("datasets/refs", Sha(stream)));
        var wrongStart = Assert.Throws<PushOffsetMismatchException>(() => store.BeginPush("datasets/refs", "data", stream.Length, Sha(stream), 0));
        Assert.Equal(half, wrongStart.Received);
        var a = Push(store, "datasets/refs", "data", stream, chunk: 1000, from: half);
        Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(store.PathOf(a)));
        Assert.Equal(0, store.ReceivedBytes("datasets/refs", Sha(stream)));
        Assert.Equal(store.PathOf(a), store.Resolve("datasets/refs", "data.path", ArtifactUse.Data));
    }

    [Fact]
    public void A_corrupted_chunk_is_refused_and_the_bytes_before_it_are_kept()
    {
        var stream = Tar(Model());
        var store = Store();
        using var upload = store.BeginPush("models/x", "model", stream.Length, Sha(stream), 0);
        upload.Append(0, stream.AsSpan(0, 4096), Sha(stream.AsSpan(0, 4096)));
        var corrupted = stream.AsSpan(4096, 4096).ToArray();
        var sha = Sha(corrupted);
        corrupted[100] ^= 0xFF; // flipped on the way
        var e = Assert.Throws<ArtifactDataLossException>(() => upload.Append(4096, corrupted, sha));
        Assert.Contains("byte 4096", e.Message);
        Assert.Equal(4096, upload.Received);
        Assert.Throws<InvalidArtifactException>(() => upload.Append(0, stream.AsSpan(0, 10), Sha(stream.AsSpan(0, 10)))); // not where it left off
        Assert.Throws<IncompletePushException>(() => upload.Complete((_, _, _) => { }));
    }

    [Fact]
    public void Chunks_past_the_announced_size_or_empty_are_refused_and_store_nothing()
    {
        var stream = Tar(Model());
        using var upload = Store().BeginPush("models/x", "model", stream.Length, Sha(stream), 0);
        var tooMuch = new byte[stream.Length + 1];
        stream.CopyTo(tooMuch, 0);
        Assert.Equal("chunk.data", Assert.Throws<InvalidArtifactException>(() => upload.Append(0, tooMuch, Sha(tooMuch))).Field);
        Assert.Equal("chunk.data", Assert.Throws<InvalidArtifactException>(() => upload.Append(0, [], Sha([]))).Field);
        Assert.Equal(0, upload.Received);
    }

    [Fact]
    public void A_stream_that_does_not_hash_to_its_announced_sha_is_discarded()
    {
        var stream = Tar(Model());
        var store = Store();
        var claimed = Sha(stream.AsSpan(1));
        using (var upload = store.BeginPush("models/x", "model", stream.Length, claimed, 0))
        {
            upload.Append(0, stream, Sha(stream));
            Assert.Throws<ArtifactDataLossException>(() => upload.Complete((_, _, _) => { }));
        }
        Assert.Empty(store.List());
        Assert.Equal(0, store.ReceivedBytes("models/x", claimed));
        Assert.Equal(0, store.StoredBytes());
    }

    [Fact]
    public void Quotas_are_checked_before_any_byte_is_stored()
    {
        var stream = Tar(Model());
        var perArtifact = Assert.Throws<ResourceExhaustedException>(() => Store(maxArtifact: stream.Length - 1).BeginPush("models/x", "model", stream.Length, Sha(stream), 0));
        Assert.Contains("Limits:MaxArtifactBytes", perArtifact.Message);
        var store = Store(maxStore: stream.Length + 100);
        Push(store, "models/x", "model", stream);
        var other = Tar(Model()); // other weights (same seed, same config): identical content costs nothing
        Push(store, "models/y", "model", other);
        DemoData.WriteTo(Path.Combine(_root, "d"));
        var data = Tar(Path.Combine(_root, "d", "preferences.jsonl"));
        var total = Assert.Throws<ResourceExhaustedException>(() => store.BeginPush("datasets/p", "data", data.Length, Sha(data), 0));
        Assert.Contains("Limits:MaxArtifactStoreBytes", total.Message);
        Assert.False(Directory.Exists(Path.Combine(store.Root, "uploads")) && Directory.EnumerateFiles(Path.Combine(store.Root, "uploads")).Any());
    }

    [Theory]
    [InlineData("../etc")]
    [InlineData("models/../x")]
    [InlineData("/abs")]
    [InlineData("models//x")]
    [InlineData(".hidden")]
    [InlineData("a/b/c/d/e")]
    [InlineData("white space")]
    [InlineData("")]
    public void Names_outside_the_documented_form_are_refused_naming_the_field(string name)
    {
        var e = Assert.Throws<InvalidArtifactException>(() => Store().BeginPush(name, "model", 4096, new string('a', 64), 0));
        Assert.Equal("name", e.Field);
        Assert.Contains("datasets/hh-small", e.Message);
    }

    [Fact]
    public void Kinds_and_hashes_outside_the_documented_form_are_refused()
    {
        Assert.Equal("kind", Assert.Throws<InvalidArtifactException>(() => Store().BeginPush("models/x", "weights", 4096, new string('a', 64), 0)).Field);
        Assert.Equal("sha256", Assert.Throws<InvalidArtifactException>(() => Store().BeginPush("models/x", "model", 4096, "ABC", 0)).Field);
    }

    [Fact]
    public void A_model_folder_is_validated_with_the_errors_train_gives_and_a_bad_one_leaves_nothing_behind()
    {
        var model = Model();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;
        config["intermediate_size"] = config["intermediate_size"]!.GetValue<int>() + 8;
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        var store = Store();
        var e = Assert.Throws<InvalidArtifactException>(() => Push(store, "models/bad", "model", Tar(model)));
        Assert.Contains("artifact 'models/bad' is not a valid model", e.Message);
        Assert.Contains("mlp", e.Message); // the tensor whose shape disagrees, by name
        Assert.Contains("has shape", e.Message);
        Assert.DoesNotContain(store.Root, e.Message); // the silo's own folders mean nothing to the caller
        Assert.Empty(store.List());
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store.Root, "objects")));

        // A data artifact is one file; a folder of files is refused.
        var folder = Path.Combine(_root, "two");
        DemoData.WriteTo(folder);
        Assert.Contains("one file", Assert.Throws<InvalidArtifactException>(() => Push(store, "datasets/two", "data", Tar(folder))).Message);
    }

    [Fact]
    public void A_config_naming_an_artifact_of_the_wrong_kind_or_none_names_the_field()
    {
        var store = Store();
        Push(store, "models/tiny", "model", Tar(Model()));
        var wrong = Assert.Throws<InvalidRunConfigException>(() => store.Resolve("models/tiny", "data.path", ArtifactUse.Data));
        Assert.Equal("data.path", wrong.Field);
        Assert.Contains("is a model", wrong.Message);
        var missing = Assert.Throws<InvalidRunConfigException>(() => store.Resolve("models/none", "policy.model", ArtifactUse.Model));
        Assert.Equal("policy.model", missing.Field);
        Assert.Contains("artifact list", missing.Message);
        Assert.Equal(store.PathOf(store.Get("models/tiny")), store.Resolve("models/tiny", "policy.model", ArtifactUse.Model));
    }
}
