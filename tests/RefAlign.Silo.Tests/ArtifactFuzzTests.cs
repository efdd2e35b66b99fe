using Grpc.Core;
using RefAlign.Grains;
using RefAlign.Grains.Artifacts;
using RefAlign.Silo.Control;
using Xunit.Abstractions;

namespace RefAlign.Silo.Tests;

/// <summary>
/// Random model and encoder folders (config.json sizes of 0, negative, up to and past 2^31, products that overflow; weight
/// file headers with such shapes, wrong dtypes, broken offsets) through artifact validation and the status mapping, as a
/// push ends: each is INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming what is wrong, and memory stays flat.
/// </summary>
[Collection(nameof(MeasuredMemoryCollection))]
public sealed class ArtifactFuzzTests(ITestOutputHelper output) : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>The limit a silo with 8 GB for models gives a pushed folder.</summary>
    const long ModelLimit = 8L << 30;

    [Fact]
    public void A_thousand_random_configs_and_headers_are_each_refused_by_name_with_memory_flat()
    {
        var r = new Random(32);
        var codes = new Dictionary<StatusCode, int>();
        GC.Collect();
        var baseline = Environment.WorkingSet;
        var peak = baseline;
        for (var i = 0; i < 1000; i++)
        {
            var (kind, folder, files) = FuzzFolders.Case(r, Path.Combine(_root, $"case-{i}"));
            var e = Record.Exception(() => ArtifactValidation.Validate($"fuzz/case-{i}", kind, folder, files, ModelLimit));
            Assert.True(e is InvalidArtifactException or ResourceExhaustedException,
                $"case {i} ({File.ReadAllText(Path.Combine(folder, "config.json"))}): {e?.GetType().Name}: {e?.Message}");
            var status = StatusMapping.ToRpc(e!, callerCancelled: false);
            Assert.True(status.StatusCode is StatusCode.InvalidArgument or StatusCode.ResourceExhausted, $"case {i}: {status.Status}");
            Assert.True(FuzzFolders.Named().IsMatch(status.Status.Detail), $"case {i} names nothing: {status.Status.Detail}");
            Assert.DoesNotContain(folder, status.Status.Detail);
            codes[status.StatusCode] = codes.GetValueOrDefault(status.StatusCode) + 1;
            Directory.Delete(folder, recursive: true);
            peak = Math.Max(peak, Environment.WorkingSet);
        }
        output.WriteLine($"statuses: {string.Join(", ", codes.Select(c => $"{c.Key} {c.Value}"))}; working set {baseline >> 20} MiB at the start, peak {peak >> 20} MiB");
        Assert.Equal(1000, codes.Values.Sum());
        Assert.True(codes.GetValueOrDefault(StatusCode.ResourceExhausted) > 0 && codes.GetValueOrDefault(StatusCode.InvalidArgument) > 0, string.Join(", ", codes));
        // Nothing a config claims is allocated: the process grows by the files' few kilobytes, not by models.
        Assert.True(peak - baseline < 512L << 20, $"the working set grew from {baseline >> 20} to {peak >> 20} MiB");
    }
}

/// <summary>The working set is the whole test host's: nothing else runs while a test of this collection measures it.</summary>
[CollectionDefinition(nameof(MeasuredMemoryCollection), DisableParallelization = true)]
public sealed class MeasuredMemoryCollection;
