using System.Reflection;

namespace RefAlign.TestSupport;

/// <summary>Where the build put the CLI and the silo (each in its own output folder, with its own deps and libtorch).</summary>
public static class BuiltTools
{
    static string Metadata(string key) =>
        typeof(BuiltTools).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;

    static string Existing(string key)
    {
        var path = Metadata(key);
        return File.Exists(path) ? path : throw new FileNotFoundException($"{key} was not built", path);
    }

    public static string CliDll => Existing("RefalignCliDll");

    public static string SiloDll => Existing("RefalignSiloDll");

    /// <summary>The repository root (README.md, appsettings.json, refalign).</summary>
    public static string RepositoryRoot => Metadata("RepositoryRoot");
}
