using System.Text;
using System.Text.RegularExpressions;

namespace RefAlign.Compute.Tokenization;

/// <summary>
/// A Hugging Face model folder's tokenizer: SentencePiece (<c>tokenizer.model</c>) or byte-level BPE
/// (<c>tokenizer.json</c>, or <c>vocab.json</c> + <c>merges.txt</c>), with the special tokens and flags from the
/// side files. Special-token strings inside the text map to their ids, as HF does by default.
/// </summary>
public sealed class TextTokenizer
{
    private readonly ITokenizerBackend backend;
    private readonly Dictionary<string, int> specialByContent;
    private readonly Dictionary<int, string> contentById;
    private readonly HashSet<int> skippedOnDecode;
    private readonly Regex? splitter;

    private TextTokenizer(ITokenizerBackend backend, SpecialTokenSettings settings, string folder)
    {
        this.backend = backend;
        Folder = folder;
        specialByContent = new(StringComparer.Ordinal);
        contentById = [];
        skippedOnDecode = [];
        foreach (var t in settings.AddedTokens)
        {
            specialByContent[t.Content] = t.Id;
            contentById[t.Id] = t.Content;
            if (t.Special) skippedOnDecode.Add(t.Id);
        }

        BosId = Resolve(settings.Bos, settings.ConfigBosId, backend.DefaultBos);
        PadId = Resolve(settings.Pad, settings.ConfigPadId, null);
        UnkId = Resolve(settings.Unk, null, backend.DefaultUnk);
        var eos = new List<int>();
        if (Resolve(settings.Eos, settings.ConfigEosIds.Count > 0 ? settings.ConfigEosIds[0] : null, backend.DefaultEos) is int first)
            eos.Add(first);
        foreach (var id in settings.ConfigEosIds) if (!eos.Contains(id)) eos.Add(id);
        EosIds = eos;
        AddBosToken = settings.AddBosToken ?? backend.DefaultAddBos;
        AddEosToken = settings.AddEosToken ?? false;

        foreach (var content in settings.AdditionalSpecialTokens)
            if (IdOf(content) is int id) Register(content, id);
        BosToken = BosId is int b && contentById.TryGetValue(b, out var bosText) ? bosText : null;
        EosToken = EosIds.Count > 0 && contentById.TryGetValue(EosIds[0], out var eosText) ? eosText : null;
        VocabSize = Math.Max(backend.VocabSize, contentById.Keys.DefaultIfEmpty(-1).Max() + 1);

        // Longest first, so "<|im_start|>" is not cut by a shorter token that prefixes it.
        var alternatives = specialByContent.Keys.Where(k => k.Length > 0)
            .OrderByDescending(k => k.Length).ThenBy(k => k, StringComparer.Ordinal).Select(Regex.Escape).ToList();
        splitter = alternatives.Count == 0 ? null : new Regex(string.Join('|', alternatives), RegexOptions.CultureInvariant);

        // A token named in the tokenizer files wins; else the model config's id; else the backend's default
        // token (Llama's <s>, GPT-2's <|endoftext|>), which is still matched in text either way.
        int? Resolve(TokenSetting setting, int? configId, string? defaultToken)
        {
            var token = setting.Mentioned ? setting.Token : defaultToken;
            if (token is null || IdOf(token) is not int id) return configId;
            Register(token, id);
            return setting.Mentioned ? id : configId ?? id;
        }
    }

    public int VocabSize { get; }

    /// <summary>The model folder the tokenizer was read from (where <c>chat_template: auto</c> looks).</summary>
    public string Folder { get; }

    /// <summary>The BOS / first EOS token's text: what a chat template's <c>bos_token</c> / <c>eos_token</c> stand for.</summary>
    public string? BosToken { get; }
    public string? EosToken { get; }
    public int? BosId { get; }
    public IReadOnlyList<int> EosIds { get; }
    public int? PadId { get; }
    public int? UnkId { get; }
    public bool AddBosToken { get; }

    /// <summary>tokenizer_config.json add_eos_token (false when absent); appends the first EOS id.</summary>
    public bool AddEosToken { get; }

    public static TextTokenizer Load(string folder)
    {
        if (!Directory.Exists(folder))
            throw new ModelFormatException($"Tokenizer folder '{folder}' does not exist.");
        // The tokenizer libraries open their files themselves: the folder is checked inside the silo's read roots first.
        Files.ReadRoots.Current.CheckFolder(folder);
        var modelPath = Path.Combine(folder, "tokenizer.model");
        var jsonPath = Path.Combine(folder, "tokenizer.json");
        var vocabPath = Path.Combine(folder, "vocab.json");
        var mergesPath = Path.Combine(folder, "merges.txt");

        // tokenizer.json is read even next to tokenizer.model: its added_tokens are part of the tokenizer.
        var tokenizerJson = Json.ReadOptional(jsonPath);
        ITokenizerBackend backend;
        if (File.Exists(modelPath)) backend = SentencePieceBackend.Load(modelPath);
        else if (tokenizerJson is not null) backend = ByteLevelBackend.FromTokenizerJson(tokenizerJson, jsonPath);
        else if (File.Exists(vocabPath) && File.Exists(mergesPath)) backend = ByteLevelBackend.FromVocabAndMerges(vocabPath, mergesPath);
        else if (File.Exists(vocabPath) || File.Exists(mergesPath))
            throw new ModelFormatException($"Tokenizer folder '{folder}' has only one of vocab.json / merges.txt; both are needed " +
                                           "(or tokenizer.model / tokenizer.json).");
        else
            throw new ModelFormatException($"No tokenizer in '{folder}': looked for tokenizer.model, tokenizer.json, " +
                                           "vocab.json + merges.txt.");
        return new(backend, SpecialTokenSettings.Read(folder, tokenizerJson), folder);
    }

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (addSpecialTokens && AddBosToken && BosId is int bos) ids.Add(bos);
        var start = 0;
        if (splitter is not null)
            for (var m = splitter.Match(text); m.Success; m = m.NextMatch())
            {
                if (m.Index > start) ids.AddRange(backend.Encode(text[start..m.Index]));
                ids.Add(specialByContent[m.Value]);
                start = m.Index + m.Length;
            }
        if (start < text.Length) ids.AddRange(backend.Encode(text[start..]));
        if (addSpecialTokens && AddEosToken && EosIds.Count > 0) ids.Add(EosIds[0]);
        return ids;
    }

    /// <summary>
    /// Ids outside the vocabulary (e.g. a model's padded embedding rows) decode to nothing rather than failing,
    /// since sampled ids from an untrained model can land there.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            if (id < 0 || id >= VocabSize) continue;
            if (!contentById.TryGetValue(id, out var content))
            {
                run.Add(id);
                continue;
            }
            // A skipped special token leaves the text around it one run, as HF's _decode drops it before joining:
            // "▁a</s>▁b" reads "a b", not "a" + "b".
            if (skipSpecialTokens && skippedOnDecode.Contains(id)) continue;
            Flush();
            text.Append(content);
        }
        Flush();
        return text.ToString();

        void Flush()
        {
            if (run.Count == 0) return;
            text.Append(backend.Decode(run));
            run.Clear();
        }
    }

    private int? IdOf(string token) => specialByContent.TryGetValue(token, out var id) ? id : backend.TokenToId(token);

    /// <summary>Named special tokens (bos/eos/pad/unk, additional) are matched in text and skipped on decode.</summary>
    private void Register(string content, int id)
    {
        specialByContent[content] = id;
        contentById[id] = content;
        skippedOnDecode.Add(id);
    }
}
