using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RefAlign.Cli.Commands.Bench;

/// <summary>
/// Result files (<c>bench … --out FILE</c>) and the benchmark page rendered from them (<c>bench report</c>): one row per
/// figure with its range over the kept runs, the ratios first with their goals. A new measurement is a new result file.
/// </summary>
internal static class BenchReport
{
    /// <summary>The goals of the ratios every suite reports under <c>ratios</c> (docs/benchmarks.md states them).</summary>
    public static readonly IReadOnlyDictionary<string, string> Goals = new Dictionary<string, string>
    {
        ["kv_cache_speedup"] = "≥ 10",
        ["shared_prefix_speedup"] = "≥ 1.5",
        ["train_to_matmul"] = "≥ 0.5",
        ["scoring_overhead"] = "≤ 0.10",
        ["orchestration_overhead"] = "≤ 1.05",
        ["transfer_vs_raw_tcp"] = "≥ 0.8",
        ["transfer_vs_raw_tcp_min"] = "≥ 0.5",
        ["broadcast_over_floor"] = "≤ 1.2",
        ["scale_out_over_floor"] = "≤ 1.1",
        ["pipelined_speedup"] = "≥ 1.3",
        ["srdpo_over_dpo"] = "≤ 1.30",
        ["srdpo_over_dpo_offloaded"] = "≤ 1.10",
        ["learner_flops_ratio"] = "≥ 0.8",
    };

    public static Command Create()
    {
        var results = new Option<string>("--results") { Description = "Folder of result files.", DefaultValueFactory = _ => Path.Combine("docs", "bench-results") };
        var output = new Option<string?>("--page") { Description = "Write the page here (default: stdout)." };
        var cmd = new Command("report", "Render the benchmark page (Markdown) from kept result files: each figure's range over the runs.") { results, output };
        cmd.SetAction(r => CliSupport.Run(() =>
        {
            var page = Render(r.GetValue(results)!);
            if (r.GetValue(output) is { } path) File.WriteAllText(path, page);
            else Console.Out.Write(page);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Writes <paramref name="result"/> of <paramref name="suite"/> with when, where and at which commit it was measured.</summary>
    public static void WriteResultFile<T>(string path, string suite, T result)
    {
        var load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[..3] : [];
        var file = new JsonObject
        {
            ["suite"] = suite,
            ["measured_at"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["host"] = new JsonObject
            {
                ["cores"] = Environment.ProcessorCount,
                ["load_average"] = new JsonArray([.. load.Select(l => JsonValue.Create(double.Parse(l, CultureInfo.InvariantCulture)))]),
                ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            },
            ["result"] = JsonSerializer.SerializeToNode(result, CliSupport.Json),
        };
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        File.WriteAllText(path, file.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>The page: per suite, its ratios (with goals) then its other figures, each as min–max over the files.</summary>
    public static string Render(string folder)
    {
        var files = Directory.Exists(folder) ? Directory.GetFiles(folder, "*.json").Order(StringComparer.Ordinal).ToList() : [];
        var runs = new List<(string Suite, string When, double[] Load, Dictionary<string, double> Figures)>();
        foreach (var f in files)
        {
            JsonNode? node;
            try { node = JsonNode.Parse(File.ReadAllText(f)); }
            catch (JsonException e) { throw new InvalidDataException($"{f}: not a result file ({e.Message})"); }
            var suite = node?["suite"]?.GetValue<string>() ?? throw new InvalidDataException($"{f}: field 'suite' is missing");
            var figures = new Dictionary<string, double>(StringComparer.Ordinal);
            Flatten(node["result"], "", figures);
            runs.Add((suite, node["measured_at"]?.GetValue<string>() ?? "?",
                [.. (node["host"]?["load_average"]?.AsArray() ?? []).Select(v => v!.GetValue<double>())], figures));
        }
        var page = new StringBuilder();
        page.Append("""
            # Benchmarks

            Rendered by `./refalign bench report --page docs/benchmarks.md` from the result files in `docs/bench-results/`
            (each written by `./refalign bench <suite> --out FILE`); do not edit by hand: a new measurement is a new result
            file. Each row is one figure's range over the kept runs of its suite, measured on the host the file names (this
            project's is a shared 2-core CPU machine, so ranges are wide). Ratios are computed inside one run, so a noisy
            host's drift cancels; a floor is what the host itself allows for the same work, measured in the same run.

            """);
        foreach (var suite in runs.GroupBy(r => r.Suite).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var list = suite.ToList();
            var loads = list.SelectMany(r => r.Load.Take(1)).ToList();
            page.Append(CultureInfo.InvariantCulture, $"\n## `bench {suite.Key}`\n\n{list.Count} run(s), {list.Min(r => r.When)} – {list.Max(r => r.When)}");
            if (loads.Count > 0) page.Append(CultureInfo.InvariantCulture, $", load average {loads.Min():0.#}–{loads.Max():0.#}");
            page.Append(".\n\n| figure | goal | min | max | runs |\n|---|---|---|---|---|\n");
            var names = list.SelectMany(r => r.Figures.Keys).Distinct()
                .OrderBy(n => n.StartsWith("ratios.", StringComparison.Ordinal) ? 0 : 1).ThenBy(n => n, StringComparer.Ordinal);
            foreach (var name in names)
            {
                var values = list.Where(r => r.Figures.ContainsKey(name)).Select(r => r.Figures[name]).ToList();
                var goal = name.StartsWith("ratios.", StringComparison.Ordinal) && Goals.TryGetValue(name["ratios.".Length..], out var g) ? g : "";
                page.Append(CultureInfo.InvariantCulture, $"| `{name}` | {goal} | {Format(values.Min())} | {Format(values.Max())} | {values.Count} |\n");
            }
        }
        if (runs.Count == 0) page.Append("\nNo result files yet.\n");
        return page.ToString();
    }

    static void Flatten(JsonNode? node, string prefix, Dictionary<string, double> into)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o) Flatten(v, prefix.Length == 0 ? k : $"{prefix}.{k}", into);
                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++) Flatten(a[i], $"{prefix}[{i}]", into);
                break;
            case JsonValue v when v.TryGetValue<double>(out var d) && double.IsFinite(d):
                into[prefix] = d;
                break;
        }
    }

    static string Format(double v) => Math.Abs(v) >= 1000 || v == Math.Round(v)
        ? v.ToString("#,0.##", CultureInfo.InvariantCulture)
        : v.ToString("0.###", CultureInfo.InvariantCulture);
}
