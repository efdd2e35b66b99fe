using System.Globalization;
using RefAlign.Grains;

namespace RefAlign.Silo.Hosting;

/// <summary>Reads <see cref="RunLimits"/> from the <c>Limits:</c> section; a bad value names its key.</summary>
public static class LimitsReader
{
    public static RunLimits Read(IConfiguration configuration)
    {
        var section = configuration.GetSection(RunLimits.Section);
        var d = new RunLimits();
        long Value(string name, long fallback, long min = 1)
        {
            var text = section[name];
            if (string.IsNullOrWhiteSpace(text)) return fallback;
            return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min
                ? v
                : throw new SiloConfigurationException($"{RunLimits.Section}:{name}", $"'{text}' is not {(min == 0 ? "a non-negative" : "a positive")} integer.");
        }
        int Int(string name, int fallback) => (int)Math.Min(int.MaxValue, Value(name, fallback));
        return new RunLimits
        {
            MaxConfigBytes = Int(nameof(RunLimits.MaxConfigBytes), d.MaxConfigBytes),
            MaxBatchSize = Int(nameof(RunLimits.MaxBatchSize), d.MaxBatchSize),
            MaxSamplesPerPrompt = Int(nameof(RunLimits.MaxSamplesPerPrompt), d.MaxSamplesPerPrompt),
            MaxNewTokens = Int(nameof(RunLimits.MaxNewTokens), d.MaxNewTokens),
            MaxSequenceLength = Int(nameof(RunLimits.MaxSequenceLength), d.MaxSequenceLength),
            MaxShards = Int(nameof(RunLimits.MaxShards), d.MaxShards),
            MaxTotalSteps = Value(nameof(RunLimits.MaxTotalSteps), d.MaxTotalSteps),
            MaxEpochs = Int(nameof(RunLimits.MaxEpochs), d.MaxEpochs),
            MaxDataFileBytes = Value(nameof(RunLimits.MaxDataFileBytes), d.MaxDataFileBytes),
            MaxArtifactBytes = Value(nameof(RunLimits.MaxArtifactBytes), d.MaxArtifactBytes),
            MaxArtifactStoreBytes = Value(nameof(RunLimits.MaxArtifactStoreBytes), d.MaxArtifactStoreBytes),
            MaxConcurrentRuns = Int(nameof(RunLimits.MaxConcurrentRuns), d.MaxConcurrentRuns),
            MaxConcurrentRunsPerSilo = Int(nameof(RunLimits.MaxConcurrentRunsPerSilo), d.MaxConcurrentRunsPerSilo),
            MaxModelMemoryBytes = Value(nameof(RunLimits.MaxModelMemoryBytes), d.MaxModelMemoryBytes, min: 0),
            MaxPendingPushes = Int(nameof(RunLimits.MaxPendingPushes), d.MaxPendingPushes),
            PendingPushExpirySeconds = Value(nameof(RunLimits.PendingPushExpirySeconds), d.PendingPushExpirySeconds),
            MaxPathLength = Int(nameof(RunLimits.MaxPathLength), d.MaxPathLength),
        };
    }
}
