using RefAlign.Compute.Encoders;
using RefAlign.Compute.Models;
using RefAlign.Compute.Tokenization;
using RefAlign.Compute.Training.Checkpoints;

namespace RefAlign.Grains.Artifacts;

/// <summary>
/// What a pushed artifact must be before it is accepted, with the errors <c>refalign train</c> gives for the same
/// folder (config, tokenizer, every tensor by name and shape). Nothing is built: config.json's sizes are bounded and its
/// memory estimated (<see cref="ModelFootprint"/>) against <c>Limits:MaxModelMemoryBytes</c> first, then each tensor's
/// shape is compared from the weight files' headers, so the cost does not depend on the size a config claims.
/// </summary>
public static class ArtifactValidation
{
    /// <param name="maxModelBytes">The memory a model may need (<see cref="RunLimits.ModelMemoryLimit"/>).</param>
    public static void Validate(string name, string kind, string folder, IReadOnlyList<ArtifactFileRecord> files, long maxModelBytes)
    {
        try
        {
            switch (kind)
            {
                case "model":
                    // Half precision: the least memory any use of the model (a bf16 replica) needs.
                    var model = CausalLmConfig.Load(folder);
                    ModelFootprint.RequireWithin(ModelFootprint.WeightBytes(ModelFootprint.Parameters(model), 2), maxModelBytes,
                        "config.json: the model's weights in half precision need", ModelFootprint.Sizes(model), "Limits:MaxModelMemoryBytes");
                    CausalLm.CheckPretrained(folder);
                    TextTokenizer.Load(folder);
                    break;
                case "encoder":
                    var encoder = EncoderConfig.Load(folder);
                    ModelFootprint.RequireWithin(ModelFootprint.WeightBytes(ModelFootprint.Parameters(encoder), 2), maxModelBytes,
                        "config.json: the encoder's weights in half precision need", ModelFootprint.Sizes(encoder), "Limits:MaxModelMemoryBytes");
                    TransformerEncoder.CheckPretrained(folder);
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
        catch (ModelTooLargeException e)
        {
            throw new ResourceExhaustedException($"artifact '{name}' is a {kind} too large for this cluster: {Unfolded(e.Message, folder, name)}");
        }
        catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
        {
            // Whatever a reader of the pushed files threw, the files are at fault: the push is refused, never retried.
            // The silo's unpacking folder means nothing to the caller: name the artifact instead.
            throw new InvalidArtifactException("kind", $"artifact '{name}' is not a valid {kind}: {Unfolded(e.Message, folder, name)}", e);
        }
    }

    static string Unfolded(string message, string folder, string name) => message.Replace(folder, name, StringComparison.Ordinal);
}
