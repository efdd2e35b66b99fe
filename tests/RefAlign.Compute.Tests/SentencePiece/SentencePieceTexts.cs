using System.Text;

namespace RefAlign.Compute.Tests.SentencePiece;

/// <summary>
/// The training corpus and the probe strings of the SentencePiece comparison, generated from a seed so every run
/// compares the same texts: several scripts, code, digits, whitespace runs, runs of one repeated character, emoji and
/// other 4-byte characters, compatibility forms that NFKC rewrites, and control characters. No text holds a line break
/// (spm_encode reads one text per line).
/// </summary>
internal static class SentencePieceTexts
{
    static readonly string[] Seeds =
    [
        "The quick brown fox jumps over the lazy dog.",
        "What is the capital of Australia? Canberra, not Sydney.",
        "She sells sea shells by the sea shore; the shells she sells are surely seashells.",
        "In 1969, Apollo 11 landed on the Moon at 20:17 UTC, 384,400 km away.",
        "Prices rose 3.5% to $1,299.99 (was $1,255.00) on 2024-03-15.",
        "Zürich, Genève und Köln: Straße, Maß, Größe, übermäßig schön.",
        "Café, naïve, façade, déjà vu, coördinate, Ærøskøbing, Łódź, Kraków.",
        "Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.",
        "Γειά σου κόσμε· η γρήγορη καφέ αλεπού πηδά πάνω από το σκυλί.",
        "日本語のテキストを正しく分割できるかどうかを確認します。",
        "中文文本测试：我们今天去公园散步，天气非常好。",
        "한국어 텍스트 처리는 공백과 음절을 모두 고려해야 합니다.",
        "مرحبا بالعالم، هذا نص عربي للاختبار.",
        "שלום עולם, זהו טקסט בעברית לבדיקה.",
        "नमस्ते दुनिया, यह हिंदी में एक परीक्षण वाक्य है।",
        "สวัสดีชาวโลก นี่คือประโยคทดสอบภาษาไทย",
        "Emoji: 😀 😃 😄 👍 🎉 🚀 ❤️ 👨‍👩‍👧 🇫🇷 🇯🇵 — and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 𠀀𠀁.",
        "def fib(n):\treturn n if n < 2 else fib(n - 1) + fib(n - 2)",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
        "<div class=\"card\"><p>Hello &amp; welcome!</p></div>",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
        "https://example.com/path?query=value&other=42#fragment",
        "Ligatures ﬁ ﬂ ﬀ, circled ① ② ③, fractions ½ ¼, powers x² y³, Roman Ⅻ ⅳ.",
        "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ｶﾀｶﾅ half-width, ㍿ ™ № ℃.",
        "Combining: e\u0301 a\u0308 o\u0302 n\u0303; Hangul jamo \u1100\u1161\u11A8.",
        "Spaces:\u00A0no-break,\u2002en,\u2003em,\u3000ideographic,\u200Bzero-width.",
        "====================  ........  ++++  ****  ----------  ________",
        "aaaaaaaaaaaaaaaaaaaa bbbbbbbbbb zzzzz 中中中中中 😀😀😀😀",
        "0123456789 9876543210 3.14159265358979 2.718281828 1e-10 -42 +7",
        "Phone: +1 (555) 123-4567; ZIP 90210; ISBN 978-3-16-148410-0.",
        "tabs\tbetween\twords\tand  double  spaces   triple   spaces",
        "UPPER lower MiXeD CaSe WORDS Words words",
        "It's a dog's life; they're here — aren't they? “Quotes” ‘single’ «guillemets».",
        "Mathematics: ∀x ∈ ℝ, ∃y: x² + y² ≥ 0; ∑ᵢ aᵢ = ∫ f(x) dx ≈ π.",
        "Currency: € 10, £ 20, ¥ 3000, ₹ 450, ₿ 0.001, ₩ 5000.",
        "Ελληνικά και русский, 中文 and English in one sentence: mixed scripts 123.",
        "Tiếng Việt có dấu: Hà Nội, Sài Gòn, phở bò, cà phê sữa đá.",
        "Türkçe: İstanbul, ığdır, şeker, çay, öğrenci, ümit.",
        "Bold claims need bold evidence: the model must tokenize exactly like the library.",
    ];

    static readonly string[] Pools =
    [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "éèêëàâäçñüöóíúßøåæłśźżğışœÉÀÇÑÜÖ",
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗ",
        "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΩ",
        "日本語中文字漢文化学生时间问题的一是不了人我在有他这",
        "あいうえおかきくけこさしすせそアイウエオカキクケコ",
        "가나다라마바사아자차카타파하한국어",
        "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
        "אבגדהוזחטיכלמנסעפצקרשת",
        "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह्ािीुूेैोौं",
        "กขคงจฉชซญดตถทธนบปผพฟภมยรลวศษสหอฮะาิีึืุูเแโใไ่้๊๋",
        "😀😃😄😁😆😅🤣😂🙂🙃😉😊😇🥰😍🤩😘👍👎👏🙏🎉🎊🚀🌍🌟🔥💯🍕🍣🐍🦀",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢𝟘𝟙𝟚𝟛𠀀𠀁𠀂🀄🃏𓀀𓀁",
        "ﬁﬂﬀ①②③④⑤½¼¾²³¹ⅫⅳⅨＡＢＣ１２３ｶﾀﾅ㍿™№℃…‥",
        "\u0301\u0308\u0302\u0303\u200D\u200C\u200B\uFEFF\u00AD\u2060",
        " \t\u00A0\u2002\u2003\u3000\u2009\u202F\u205F\u1680\u2028\u2029\u0085",
        "\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000B\u000C\r\u000E\u000F\u0010\u001B\u001F\u007F\u0080\u009F\u0000",
        "\uE000\uE001\uF8FF\uFFFD\uFFFC\uFFFF\u2581",
    ];

    static readonly string[] RunCharacters =
        ["a", "b", "z", "A", "=", ".", "+", "*", "-", "_", "!", "0", "1", "9", "中", "ﬁ", "😀", "\u2581", " ", "\t", "é", "ы", "あ", "👍🏽"];

    /// <summary>A corpus of <paramref name="lines"/> lines for spm_train.</summary>
    public static List<string> Corpus(int lines, int seed = 7)
    {
        var rng = new Random(seed);
        var result = new List<string>(lines);
        result.AddRange(Seeds);
        while (result.Count < lines)
        {
            var line = rng.Next(10) switch
            {
                < 4 => Pick(rng, Seeds),
                < 6 => Mutate(rng, Pick(rng, Seeds)),
                < 8 => Words(rng, rng.Next(4, 18)),
                _ => Pick(rng, Seeds) + " " + RandomText(rng, rng.Next(1, 30)),
            };
            result.Add(Clean(line));
        }
        return result;
    }

    /// <summary>At least <paramref name="count"/> probe strings, the edge cases first.</summary>
    public static List<string> Probes(int count, int seed = 11)
    {
        var rng = new Random(seed);
        var result = new List<string>
        {
            "", " ", "  ", "   ", "\t", " \t ", "\u3000", "\u00A0", "\u2581", "\u2581\u2581", " \u2581 ", "a", " a", "a ", "  a  b  ",
            "Hello world", " Hello world", "Hello  world", "Hello world ", "hello\tworld", "\r", "x\ry", "\u0000", "a\u0000b",
            "\uD800", "lone \uDC00 surrogate",
        };
        for (var i = 0; i < 60; i++) result.Add(FromPool(rng, Pools[17], rng.Next(1, 25))); // only whitespace
        string[] longPools = [Pools[0] + Pools[2], Pools[1], Pools[6], Pools[13], string.Concat(Pools)];
        foreach (var pool in longPools) result.Add(FromPool(rng, pool, 10_000));
        result.Add(new string('a', 10_000));
        result.Add(new string(' ', 10_000));
        result.Add(string.Concat(Enumerable.Repeat("ab", 5_000)));
        result.Add(string.Concat(Words(rng, 1_700).EnumerateRunes().Take(10_000)));
        foreach (var c in RunCharacters)
            for (var n = 1; n <= 64; n++) result.Add(string.Concat(Enumerable.Repeat(c, n)));
        for (var i = 0; i < 600; i++)
        {
            var run = string.Concat(Enumerable.Repeat(Pick(rng, RunCharacters), rng.Next(2, 120)));
            result.Add(rng.Next(3) switch { 0 => "x " + run, 1 => run + " y", _ => Words(rng, 2) + run + Words(rng, 2) });
        }
        var corpus = Corpus(3_000, seed + 1);
        while (result.Count < count)
        {
            var text = rng.Next(10) switch
            {
                < 2 => Pick(rng, corpus),
                < 5 => Mutate(rng, Pick(rng, corpus)),
                < 8 => RandomText(rng, rng.Next(1, 80)),
                _ => Words(rng, rng.Next(1, 12)),
            };
            result.Add(text);
        }
        return [.. result.Select(Clean)];
    }

    static string Words(Random rng, int n)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < n; i++)
        {
            var seed = Pick(rng, Seeds).Split(' ');
            sb.Append(Pick(rng, seed));
            sb.Append(rng.Next(12) switch { 0 => "  ", 1 => "\t", 2 => "", 3 => " " + rng.Next(100_000) + " ", _ => " " });
        }
        return sb.ToString();
    }

    // Edits whole characters, so no surrogate pair is ever split.
    static string Mutate(Random rng, string text)
    {
        var runes = text.EnumerateRunes().Select(r => r.ToString()).ToList();
        for (var k = rng.Next(1, 6); k > 0; k--)
        {
            var at = rng.Next(runes.Count + 1);
            switch (rng.Next(6))
            {
                case 0: runes.Insert(at, RandomText(rng, rng.Next(1, 6))); break;
                case 1: if (at < runes.Count) runes.RemoveRange(at, Math.Min(runes.Count - at, rng.Next(1, 4))); break;
                case 2: runes.Insert(at, new string(' ', rng.Next(2, 6))); break;
                case 3: runes.Insert(at, string.Concat(Enumerable.Repeat(Pick(rng, RunCharacters), rng.Next(2, 30)))); break;
                case 4: runes.Insert(at, rng.NextInt64(0, 10_000_000_000).ToString(System.Globalization.CultureInfo.InvariantCulture)); break;
                default: runes.Insert(at, FromPool(rng, Pools[18], 1)); break;
            }
        }
        return string.Concat(runes);
    }

    static string RandomText(Random rng, int runes)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < runes; i++) sb.Append(FromPool(rng, Pick(rng, Pools), 1));
        return sb.ToString();
    }

    static string FromPool(Random rng, string pool, int runes)
    {
        var chars = pool.EnumerateRunes().ToArray();
        var sb = new StringBuilder();
        for (var i = 0; i < runes; i++) sb.Append(chars[rng.Next(chars.Length)].ToString());
        return sb.ToString();
    }

    static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    // One text per line for spm; the HF special-token strings stay out of the general set (they are tested apart).
    static string Clean(string text) => text.Replace('\n', ' ').Replace("<s>", "<s.", StringComparison.Ordinal)
        .Replace("</s>", "</s.", StringComparison.Ordinal).Replace("<unk>", "<unk.", StringComparison.Ordinal);
}
