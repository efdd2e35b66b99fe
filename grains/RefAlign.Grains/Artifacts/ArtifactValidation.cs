using System.Text.Json;
using RefAlign.Compute;
using RefAlign.Compute.Encoders;
using RefAlign.Compute.Formats;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Grains.Artifacts;

/// <summary>
/// What a pushed artifact must be before it is accepted, with the errors <c>refalign train</c> gives for the same
/// folder (config, tokenizer, every tensor by name and shape). The module built for the tensor check lives on the CPU:
/// above <see cref="FullCheckBytes"/> of weights only the config, the tokenizer and the weight files' headers are checked,
/// and the first run that loads the model checks the rest.
/// </summary>
public static class ArtifactValidation
{
    public const long FullCheckBytes = 2L << 30;

    public static void Validate(string name, string kind, string folder, IReadOnlyList<ArtifactFileRecord> files)
    {
        try
        {
            var weights = files.Where(f => f.Path.EndsWith(".safetensors", StringComparison.Ordinal)).Sum(f => f.Size);
            switch (kind)
            {
                case "model":
                    if (weights <= FullCheckBytes) CausalLm.CheckPretrained(folder);
                    else { CausalLmConfig.Load(folder); ModelWeights.CheckHeaders(folder); }
                    TextTokenizer.Load(folder);
                    break;
                case "encoder":
                    if (weights <= FullCheckBytes) TransformerEncoder.FromPretrained(folder).Dispose();
                    else { EncoderConfig.Load(folder); ModelWeights.CheckHeaders(folder); }
                    EncoderTokenizer.Load(folder);
                    break;
                case "data":
                    if (files.Count != 1) throw new InvalidDataException($"a data artifact is one file, but this one has {files.Count}; push the data file itself.");
                    break;
                case "checkpoint":
                    if (CheckpointStore.ReadManifest(folder) is null)
                        throw new InvalidDataException($"a checkpoint artifact is a checkpoint folder (with {CheckpointManifest.FileName}); push a model folder as kind 'model'.");
                    break;
            }
        }
        catch (Exception e) when (e is ModelFormatException or InvalidDataException or IOException or JsonException or InvalidRunConfigException
                                      or ArgumentException)
        {
            // The silo's unpacking folder means nothing to the caller: name the artifact instead.
            throw new InvalidArtifactException("kind", $"artifact '{name}' is not a valid {kind}: {e.Message.Replace(folder, name, StringComparison.Ordinal)}", e);
        }
    }
}
