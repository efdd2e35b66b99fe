using System.Diagnostics;
using System.Text.Json.Nodes;
using RefAlign.Compute.Data;
using RefAlign.Compute.Files;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// Reads confined to a silo's roots where files are opened: a link at depth 1 or 2, a linked folder, a shard an index
/// names through a link, and a link swapped in after the folder was checked all lead nowhere outside. A process without
/// roots (the CLI) reads what it is pointed at, links included.
/// </summary>
public sealed class ReadRootsTests : IDisposable
{
    readonly string _inside = Directory.CreateTempSubdirectory("refalign-roots-in-").FullName;
    readonly string _outside = Directory.CreateTempSubdirectory("refalign-roots-out-").FullName;

    public void Dispose()
    {
        Directory.Delete(_inside, recursive: true);
        Directory.Delete(_outside, recursive: true);
    }

    string Model(string name = "model")
    {
        var dir = Path.Combine(_inside, name);
        ModelPresets.Initialize(dir, "tiny", "llama", seed: 4);
        return dir;
    }

    /// <summary>A copy of <paramref name="file"/> outside the roots, and the link that replaces it inside.</summary>
    string LinkOut(string file, string? linkAt = null)
    {
        var target = Path.Combine(_outside, $"{Guid.NewGuid():N}-{Path.GetFileName(file)}");
        File.Copy(file, target);
        linkAt ??= file;
        if (File.Exists(linkAt)) File.Delete(linkAt);
        Directory.CreateDirectory(Path.GetDirectoryName(linkAt)!);
        File.CreateSymbolicLink(linkAt, target);
        return target;
    }

    static void AssertOutside(Exception? e, string name)
    {
        Assert.NotNull(e);
        var outside = e as OutsideRootsException ?? e.InnerException as OutsideRootsException;
        Assert.True(outside is not null, $"{e.GetType().Name}: {e.Message}");
        Assert.Contains(name, outside.Message);
        Assert.Contains("outside the silo's read roots", outside.Message);
    }

    [Fact]
    public void A_link_at_depth_one_or_two_is_refused_and_without_roots_it_is_read()
    {
        var model = Model();
        LinkOut(Path.Combine(model, "tokenizer.model"));
        LinkOut(Path.Combine(model, "config.json"), Path.Combine(model, "extras", "deeper", "notes.json"));
        using (ReadRoots.Narrow([_inside]))
        {
            AssertOutside(Record.Exception(() => ReadRoots.Current.CheckFolder(model)), "tokenizer.model");
            AssertOutside(Record.Exception(() => CausalLm.FromPretrained(model)), model);
            File.Delete(Path.Combine(model, "tokenizer.model"));
            AssertOutside(Record.Exception(() => ReadRoots.Current.CheckFolder(model)), Path.Combine("extras", "deeper", "notes.json"));
        }
        // No roots: the workstation's CLI follows links wherever its user put them.
        ReadRoots.Current.CheckFolder(model);
        using var loaded = CausalLm.FromPretrained(model);
    }

    [Fact]
    public void A_linked_folder_outside_is_refused_and_one_inside_is_walked_too()
    {
        var model = Model();
        Directory.CreateDirectory(Path.Combine(_outside, "assets"));
        File.WriteAllText(Path.Combine(_outside, "assets", "secret.txt"), "outside");
        Directory.CreateSymbolicLink(Path.Combine(model, "assets"), Path.Combine(_outside, "assets"));
        using (ReadRoots.Narrow([_inside]))
            AssertOutside(Record.Exception(() => ReadRoots.Current.CheckFolder(model)), "assets");
        Directory.Delete(Path.Combine(model, "assets"));

        // Inside the roots, but holding a link that leads out: the walk follows it and finds the link.
        var shared = Path.Combine(_inside, "shared");
        Directory.CreateDirectory(shared);
        File.CreateSymbolicLink(Path.Combine(shared, "secret.txt"), Path.Combine(_outside, "assets", "secret.txt"));
        Directory.CreateSymbolicLink(Path.Combine(model, "shared"), shared);
        // A cycle ends the walk rather than looping.
        Directory.CreateSymbolicLink(Path.Combine(shared, "loop"), model);
        using (ReadRoots.Narrow([_inside]))
            AssertOutside(Record.Exception(() => ReadRoots.Current.CheckFolder(model)), "secret.txt");
    }

    [Fact]
    public void A_shard_the_index_names_through_a_link_is_refused_where_it_is_opened()
    {
        var model = Model();
        // Sharded: the weights split over an index, one shard moved out and named by the index through a sub-folder link.
        using (var m = CausalLm.FromPretrained(model))
            m.SavePretrained(model, maxShardBytes: 64 << 10);
        File.Delete(Path.Combine(model, ModelWeights.SingleFile));
        var index = Path.Combine(model, ModelWeights.IndexFile);
        var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        var map = json["weight_map"]!.AsObject();
        var shard = map.Select(kv => kv.Value!.GetValue<string>()).First();
        LinkOut(Path.Combine(model, shard), Path.Combine(model, "sub", "w.safetensors"));
        File.Delete(Path.Combine(model, shard));
        foreach (var name in map.Where(kv => kv.Value!.GetValue<string>() == shard).Select(kv => kv.Key).ToList()) map[name] = "sub/w.safetensors";
        File.WriteAllText(index, json.ToJsonString());

        Assert.NotEmpty(ModelWeights.ReadShapes(model)); // no roots: the link is followed
        using (ReadRoots.Narrow([_inside]))
        {
            AssertOutside(Record.Exception(() => ModelWeights.ReadShapes(model)), "w.safetensors");
            AssertOutside(Record.Exception(() => CausalLm.CheckPretrained(model)), "w.safetensors");
        }
    }

    [Fact]
    public void A_link_swapped_in_after_the_check_is_refused_when_the_file_is_opened()
    {
        var model = Model();
        var data = Path.Combine(_inside, "data");
        DemoData.WriteTo(data);
        var pairs = Path.Combine(data, "preferences.jsonl");
        using (ReadRoots.Narrow([_inside]))
        {
            ReadRoots.Current.CheckFolder(model); // admitted: every entry inside
            Assert.NotEmpty(PreferenceDataset.Load(pairs).Examples);
            // Then the files are replaced by links that lead out, as an attacker with write access to the roots would.
            LinkOut(Path.Combine(model, ModelWeights.SingleFile));
            LinkOut(Path.Combine(model, "config.json"));
            LinkOut(pairs);
            AssertOutside(Record.Exception(() => ModelWeights.ReadShapes(model)), ModelWeights.SingleFile);
            AssertOutside(Record.Exception(() => CausalLmConfig.Load(model)), "config.json");
            AssertOutside(Record.Exception(() => PreferenceDataset.Load(pairs).Examples.Count), "preferences.jsonl");
        }
    }

    [Fact]
    public void A_fifo_is_refused_without_being_opened()
    {
        var model = Model();
        var fifo = Path.Combine(model, "model.safetensors");
        File.Delete(fifo);
        using (var mkfifo = Process.Start("mkfifo", [fifo]) ?? throw new InvalidOperationException("mkfifo did not start"))
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }
        using var _ = ReadRoots.Narrow([_inside]);
        // Opening a FIFO for reading would block until a writer comes: it is refused by its type first.
        var e = Assert.Throws<OutsideRootsException>(() => ModelWeights.ReadShapes(model));
        Assert.Contains("not a regular file", e.Message);
        Assert.Contains("not a regular file", Assert.Throws<OutsideRootsException>(() => ReadRoots.Current.CheckFolder(model)).Message);
    }

    [Fact]
    public void A_narrowed_scope_only_narrows()
    {
        var inner = new ReadRoots([_inside]);
        Assert.True(inner.Contains(Path.Combine(UnixPaths.Canonical(_inside), "x")));
        Assert.False(inner.Contains(UnixPaths.Canonical(_outside)));
        using (ReadRoots.Narrow([_inside]))
        using (ReadRoots.Narrow([_outside]))
        {
            // Nested scopes: a path must lie under both, so neither root alone is readable.
            Assert.False(ReadRoots.Current.Contains(UnixPaths.Canonical(_outside)));
            Assert.False(ReadRoots.Current.Contains(UnixPaths.Canonical(_inside)));
        }
        Assert.False(ReadRoots.Current.Confines);
    }
}
