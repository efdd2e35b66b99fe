using System.Collections.Frozen;

namespace RefAlign.Silo.Dashboard;

/// <summary>
/// The page's files, embedded in the silo's assembly as <c>dashboard/NAME</c> by the build (the page's own html/js/css
/// and the chart library's dist files from npm): the dashboard works offline and wherever the silo runs.
/// </summary>
internal static class DashboardAssets
{
    const string Prefix = "dashboard/";

    static readonly FrozenDictionary<string, string> ContentTypes = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".svg"] = "image/svg+xml",
    }.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);

    /// <summary>Loaded once: a handful of small files (the chart library is ~50 KB).</summary>
    static readonly FrozenDictionary<string, byte[]> Files = Load();

    static FrozenDictionary<string, byte[]> Load()
    {
        var assembly = typeof(DashboardAssets).Assembly;
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            files[name[Prefix.Length..]] = copy.ToArray();
        }
        return files.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The file, or 404: only the embedded names are ever looked up, so no path reaches the file system.</summary>
    public static IResult Serve(string file) =>
        Files.TryGetValue(file, out var bytes) && ContentTypes.TryGetValue(Path.GetExtension(file), out var type)
            ? Results.Bytes(bytes, type)
            : Results.NotFound();
}
