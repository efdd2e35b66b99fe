using RefAlign.Cli.Commands.Bench;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Presets;
using static TorchSharp.torch;

namespace RefAlign.Cli.Tests;

/// <summary><c>bench cluster</c>'s in-process floors for <c>generate_2_silos_vs_1</c> and <c>broadcast_3_vs_1</c>.</summary>
public sealed class HostFloorsTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-floors-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Generation_floor_samples_both_shards_and_leaves_libtorch_threads_as_it_found_them()
    {
        var model = Path.Combine(_root, "policy");
        ModelPresets.Initialize(model, "tiny", "llama", seed: 1);
        DemoData.WriteTo(Path.Combine(_root, "data"));
        var config = RunConfig.Parse($$"""
            { "name": "floor", "algorithm": "refalign", "seed": 5, "policy": { "model": "{{model}}" },
              "data": { "path": "{{Path.Combine(_root, "data", "references.jsonl")}}", "max_prompt_length": 32 },
              "refalign": { "reward_model": "encoder", "num_samples": 2, "max_new_tokens": 4 },
              "batch_size": 4, "max_steps": 4, "distributed": { "shards": 2 } }
            """).Validate(requirePaths: false);
        var tokenizer = TextTokenizer.Load(model);
        var threads = get_num_threads();

        var floor = HostFloors.Generation(config, tokenizer, TrainingData.Load(config, tokenizer));

        // Two threads at once ÷ the same two shards one after the other: about 0.5 on two free cores, about 1 on one
        // (never a timing goal here: that is the bench's job).
        Assert.InRange(floor, 0.2, 2.0);
        Assert.Equal(threads, get_num_threads());
    }

    [Fact]
    public async Task Relay_floor_moves_every_byte_through_three_hops_and_times_both_chains()
    {
        // Not a multiple of the 8 MB slice, so the last slice is a short one.
        var (ratio, one, three) = await HostFloors.Relay((9 << 20) + 12345, CancellationToken.None);

        // Each hop's buffer is compared with what the source sent (a mismatch throws); no timing goal here.
        Assert.True(one > 0 && three > 0, $"{one} s, {three} s");
        Assert.InRange(ratio, 0.1, 50);
    }
}
