namespace RefAlign.Compute.BertScore;

/// <summary>bert_score's default layer per model (its <c>model2layers</c>), for the models docs/algorithms.md §4 names.</summary>
public static class BertScoreLayers
{
    static readonly Dictionary<string, int> Known = new(StringComparer.Ordinal)
    {
        ["roberta-large"] = 17, ["FacebookAI/roberta-large"] = 17,
        ["roberta-base"] = 10, ["FacebookAI/roberta-base"] = 10,
        ["bert-base-uncased"] = 9, ["google-bert/bert-base-uncased"] = 9,
        ["distilbert-base-uncased"] = 5, ["distilbert/distilbert-base-uncased"] = 5,
        ["microsoft/deberta-xlarge-mnli"] = 40,
        ["facebook/bart-large-mnli"] = 11,
    };

    public static IEnumerable<string> KnownNames => Known.Keys;

    /// <summary>The default layer for a hub name or a folder whose last segment is one; null when unknown.</summary>
    public static int? Find(string modelTypeOrName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelTypeOrName);
        var name = modelTypeOrName.Trim().TrimEnd('/', '\\');
        foreach (var key in new[] { name, Path.GetFileName(name) })
            if (Known.TryGetValue(key, out var l)) return l;
        return null;
    }
}
