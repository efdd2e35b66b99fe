using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace RefAlign.Compute.Models;

/// <summary>The dtype a run loads its models in.</summary>
[JsonConverter(typeof(SnakeCaseEnumConverter<ModelDType>))]
public enum ModelDType
{
    [JsonStringEnumMemberName("float32")] Float32,
    [JsonStringEnumMemberName("bfloat16")] BFloat16,
    [JsonStringEnumMemberName("float16")] Float16,
}

public static class ModelDTypes
{
    public static ScalarType ToScalarType(this ModelDType dtype) => dtype switch
    {
        ModelDType.BFloat16 => ScalarType.BFloat16,
        ModelDType.Float16 => ScalarType.Float16,
        _ => ScalarType.Float32,
    };
}
