using RefAlign.Presets;

namespace RefAlign.TestSupport;

/// <summary>
/// A temporary folder with the tiny Llama policy (<c>policy/</c>), the tiny RoBERTa BERTScore encoder (<c>encoder/</c>)
/// and the shipped demo data (<c>data/</c>), as the demo writes them; removed on dispose.
/// </summary>
public sealed class DemoWorkspace : IDisposable
{
    public DemoWorkspace(string prefix = "refalign-test-")
    {
        Root = Directory.CreateTempSubdirectory(prefix).FullName;
        ModelPresets.Initialize(PolicyDir, "tiny", "llama", seed: 1);
        EncoderPresets.Initialize(EncoderDir, "tiny-roberta", seed: 2);
        DemoData.WriteTo(DataDir);
    }

    public string Root { get; }

    public string PolicyDir => Path.Combine(Root, "policy");

    public string EncoderDir => Path.Combine(Root, "encoder");

    public string DataDir => Path.Combine(Root, "data");

    public string References => Path.Combine(DataDir, DemoData.ReferencesFileName);

    public string Preferences => Path.Combine(DataDir, DemoData.PreferencesFileName);

    /// <summary>Removes the folder, unless REFALIGN_KEEP_TEST_FILES=1 (then silo logs and runs stay for a look).</summary>
    public void Dispose()
    {
        if (Environment.GetEnvironmentVariable("REFALIGN_KEEP_TEST_FILES") == "1") return;
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }
}
