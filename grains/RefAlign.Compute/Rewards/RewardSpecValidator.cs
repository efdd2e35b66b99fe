using System.Net;
using RefAlign.Compute.Training;

namespace RefAlign.Compute.Rewards;

/// <summary>Checks of <c>refalign.rewards</c>; each failure names the field (<c>refalign.rewards[i].pattern</c>, …).</summary>
internal static class RewardSpecValidator
{
    public static void Validate(RefAlignSection section, bool requirePaths)
    {
        const string list = "refalign.rewards";
        if (section.Rewards is { Count: 0 }) Fail(list, "must name at least one reward (leave it out for BERTScore alone)");
        var rewards = section.EffectiveRewards;
        for (var i = 0; i < rewards.Count; i++) Validate(rewards[i], $"{list}[{i}]", requirePaths);
        if (rewards.Count(r => r.Kind == RewardKind.BertScore) > 1)
            Fail(list, "names bertscore twice (one encoder per run: refalign.reward_model)");
        // Negative weights are penalties; a zero sum leaves the total undefined.
        if (Math.Abs(rewards.Sum(r => r.Weight)) < 1e-12)
            Fail(list, $"has weights that sum to 0 ({string.Join(", ", rewards.Select(r => r.Weight))}); the total is Σ w·s / Σ w");
    }

    static void Validate(RewardSpec r, string at, bool requirePaths)
    {
        if (!Enum.IsDefined(r.Kind)) Fail($"{at}.kind", $"must be one of {string.Join(", ", SnakeCaseEnumConverter<RewardKind>.Names)}");
        if (!double.IsFinite(r.Weight)) Fail($"{at}.weight", "must be a finite number");
        // A field of another kind is a mistake (a wrong kind, or a misplaced setting), never ignored.
        (string Field, bool Set, RewardKind Kind)[] owned =
        [
            ("model", r.Model is not null, RewardKind.RewardModel),
            ("pattern", r.Pattern is not null, RewardKind.Rule), ("match", r.Match is not null, RewardKind.Rule),
            ("tolerance", r.Tolerance is not null, RewardKind.Rule), ("format_bonus", r.FormatBonus is not null, RewardKind.Rule),
            ("format_pattern", r.FormatPattern is not null, RewardKind.Rule),
            ("url", r.Url is not null, RewardKind.Remote), ("api_key_env", r.ApiKeyEnv is not null, RewardKind.Remote),
            ("ca_certificate", r.CaCertificate is not null, RewardKind.Remote), ("timeout_seconds", r.TimeoutSeconds is not null, RewardKind.Remote),
            ("max_concurrency", r.MaxConcurrency is not null, RewardKind.Remote), ("retries", r.Retries is not null, RewardKind.Remote),
            ("batch_size", r.BatchSize is not null, RewardKind.Remote), ("min_score", r.MinScore is not null, RewardKind.Remote),
            ("max_score", r.MaxScore is not null, RewardKind.Remote),
        ];
        foreach (var (field, set, kind) in owned)
            if (set && kind != r.Kind)
                Fail($"{at}.{field}", $"is only used by {SnakeCaseEnumConverter<RewardKind>.NameOf(kind)} rewards (this one is {SnakeCaseEnumConverter<RewardKind>.NameOf(r.Kind)})");

        switch (r.Kind)
        {
            case RewardKind.Rule:
                Pattern(r.Pattern ?? RewardSpec.DefaultPattern, $"{at}.pattern");
                if (r.FormatPattern is { } f) Pattern(f, $"{at}.format_pattern");
                if (r.Match is { } m && !Enum.IsDefined(m)) Fail($"{at}.match", "must be numeric or exact");
                if (r.Tolerance is { } t && !(t >= 0 && double.IsFinite(t))) Fail($"{at}.tolerance", "must be ≥ 0");
                if (r.FormatBonus is { } b && !double.IsFinite(b)) Fail($"{at}.format_bonus", "must be a finite number");
                break;
            case RewardKind.RewardModel:
                if (string.IsNullOrWhiteSpace(r.Model)) Fail($"{at}.model", "must name an HF …ForSequenceClassification folder");
                if (requirePaths)
                {
                    if (!Directory.Exists(r.Model)) Fail($"{at}.model", $"folder '{r.Model}' does not exist");
                    try { RewardModelScorer.Check(r.Model!); }
                    catch (ModelFormatException e) { throw new InvalidRunConfigException($"{at}.model", $"field '{at}.model' {e.Message}", e); }
                }
                break;
            case RewardKind.Remote:
                RemoteAddress(r.Url, $"{at}.url");
                if (string.IsNullOrWhiteSpace(r.ApiKeyEnv)) Fail($"{at}.api_key_env", "must name the environment variable that holds the service's key");
                if (requirePaths && string.IsNullOrEmpty(Environment.GetEnvironmentVariable(r.ApiKeyEnv!)))
                    Fail($"{at}.api_key_env", $"names '{r.ApiKeyEnv}', which is not set on this host");
                if (r.TimeoutSeconds is { } s && !(s > 0 && s <= 3600)) Fail($"{at}.timeout_seconds", "must be in (0, 3600]");
                if (r.MaxConcurrency is { } c && c is < 1 or > 64) Fail($"{at}.max_concurrency", "must be in [1, 64]");
                if (r.Retries is { } n && n is < 0 or > 10) Fail($"{at}.retries", "must be in [0, 10]");
                if (r.BatchSize is { } k && k is < 1 or > 4096) Fail($"{at}.batch_size", "must be in [1, 4096]");
                var (lo, hi) = (r.MinScore ?? RewardSpec.DefaultMinScore, r.MaxScore ?? RewardSpec.DefaultMaxScore);
                if (!(double.IsFinite(lo) && double.IsFinite(hi) && lo < hi)) Fail($"{at}.min_score", $"must be finite and below max_score ({lo} vs {hi})");
                if (requirePaths && r.CaCertificate is { } ca && !File.Exists(ca)) Fail($"{at}.ca_certificate", $"file '{ca}' does not exist");
                break;
        }
    }

    static void Pattern(string pattern, string field)
    {
        try { RuleReward.Compile(pattern, field); }
        catch (ArgumentException e) { Fail(field, e.Message.Split(" (Parameter")[0]); }
    }

    /// <summary>An absolute https:// address; plain http:// only where the traffic never leaves the machine.</summary>
    public static void RemoteAddress(string? url, string field)
    {
        if (string.IsNullOrWhiteSpace(url) || !Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
        {
            Fail(field, "must be an absolute https:// address of a RewardService");
            return;
        }
        if (uri.Scheme == "http" && !IsLoopback(uri.Host))
            Fail(field, $"'{url}' needs TLS (https://): a key and scores must not cross the network in the clear (plain http:// is for loopback addresses only)");
    }

    static bool IsLoopback(string host) =>
        host == "localhost" || (IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));

    static void Fail(string field, string message) => throw new InvalidRunConfigException(field, $"field '{field}' {message}.");
}
