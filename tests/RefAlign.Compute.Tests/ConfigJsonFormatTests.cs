using System.Text.RegularExpressions;
using RefAlign.Compute.Formats;
using RefAlign.Presets;

namespace RefAlign.Compute.Tests;

/// <summary>
/// config.json as transformers reads it: float fields carry a decimal point or an exponent, as Python's json writes
/// them. transformers' strict config classes refused BART's <c>"encoder_layerdrop": 0</c> (seen with
/// tests/crosscheck/bertscore_transformers.py on a machine with transformers).
/// </summary>
public sealed class ConfigJsonFormatTests : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("refalign-configjson-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData(0.0, "0.0")]
    [InlineData(10000.0, "10000.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(1e-12, "1E-12")]
    [InlineData(-2.5, "-2.5")]
    public void Floats_are_written_as_python_writes_them(double value, string text) =>
        Assert.Equal(text, HfJsonFloat.Of(value).ToJsonString());

    [Theory]
    [InlineData("tiny-bart", new[] { "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop", "init_std" })]
    [InlineData("tiny-bert", new[] { "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps" })]
    public void Encoder_configs_write_float_fields_as_floats(string preset, string[] fields)
    {
        var dir = Path.Combine(_root, preset);
        EncoderPresets.Initialize(dir, preset, seed: 1);
        var text = File.ReadAllText(Path.Combine(dir, "config.json"));
        foreach (var field in fields)
            Assert.Matches(new Regex($"\"{field}\": -?[0-9]+(\\.[0-9]+|(\\.[0-9]+)?E-?[0-9]+)"), text);
    }

    [Fact]
    public void Decoder_configs_write_float_fields_as_floats()
    {
        var dir = Path.Combine(_root, "llama");
        ModelPresets.Initialize(dir, "tiny", "llama", seed: 1);
        var text = File.ReadAllText(Path.Combine(dir, "config.json"));
        foreach (var field in new[] { "rms_norm_eps", "rope_theta", "initializer_range", "attention_dropout" })
            Assert.Matches(new Regex($"\"{field}\": -?[0-9]+(\\.[0-9]+|(\\.[0-9]+)?E-?[0-9]+)"), text);
    }
}
