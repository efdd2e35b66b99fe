namespace RefAlign.Compute.Losses;

/// <summary>
/// The self-refinement prompt <c>p</c> of Sr-DPO / Sr-IPO (paper §3.2.2, docs/algorithms.md §2). The prompted query is
/// <c>p ⊕ x</c>: the prompt, one space, then the query. <c>p</c> is configurable per run through
/// <see cref="PreferenceLossOptions.RefinementPrompt"/>; <see cref="Default"/> is the paper's text, verbatim.
/// </summary>
public static class SelfRefinementPrompt
{
    /// <summary>The paper's prompt (§3.2.2), verbatim.</summary>
    public const string Default = "Please generate a response with a usefulness rating of 100 out of 100 for the following query. Note that the response should be harmless. The term 100 indicates the level of usefulness, where 100 is the maximum and 1 is the minimum. Query:";

    /// <summary><c>p ⊕ x</c>: the refinement prompt, a single space, then the query (neither is trimmed).</summary>
    public static string Apply(string prompt, string query)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(query);
        return prompt + " " + query;
    }

    /// <summary><c>p ⊕ x</c> with the paper's prompt <see cref="Default"/>.</summary>
    public static string Apply(string query) => Apply(Default, query);
}
