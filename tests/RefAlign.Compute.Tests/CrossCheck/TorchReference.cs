using System.Text.Json;
using System.Text.Json.Nodes;

namespace RefAlign.Compute.Tests.CrossCheck;

/// <summary>
/// tests/crosscheck/torch_reference.py run by Debian's <c>/usr/bin/python3</c> with its torch 1.13 and numpy
/// (build/test-packages.txt). A missing interpreter or torch fails the calling test with what Python printed.
/// </summary>
internal static class TorchReference
{
    const string Python = "/usr/bin/python3";

    public static string Script => Path.Combine(BuiltTools.RepositoryRoot, "tests", "crosscheck", "torch_reference.py");

    /// <summary>Runs one subcommand and returns the JSON array it prints, one object per case.</summary>
    public static async Task<IReadOnlyList<JsonObject>> RunAsync(string command, IEnumerable<string> args)
    {
        if (!File.Exists(Python))
            throw new InvalidOperationException($"{Python} is missing: install the Debian packages in build/test-packages.txt (python3-torch, python3-numpy).");
        // -B: no __pycache__ in the source tree.
        var stdout = await ExternalTool.RunCheckedAsync(Python, ["-B", Script, command, .. args], timeout: TimeSpan.FromMinutes(5));
        var parsed = JsonNode.Parse(stdout) as JsonArray
                     ?? throw new InvalidOperationException($"{Script} {command} printed no JSON array.");
        return [.. parsed.Select(n => n as JsonObject ?? throw new InvalidOperationException($"{Script} {command}: a result is not an object."))];
    }

    public static double Number(JsonObject o, string key) =>
        o[key]?.GetValue<double>() ?? throw new InvalidOperationException($"result '{o["name"]}' has no '{key}'.");

    public static readonly JsonSerializerOptions Options = new() { WriteIndented = false };
}
