"""A deterministic corpus of tokenizer test strings (bytes).

    corpus() -> list[bytes]     # ~330 strings, same on every run

Hand-written cases (prose in many scripts, emoji, code, whitespace runs with
tabs, CR/LF and Unicode spaces, numbers of every length, contractions in all
cases, chat/special token texts of several model families, invalid UTF-8)
plus seeded random mixes of the same ingredients. Used by
tests/test_tokenizer_llama.py to compare Realm's tokenizers with llama.cpp.
"""
from __future__ import annotations

import random

SPECIAL_TEXTS = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<|eot_id|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|user|>", "<|assistant|>",
    "<|end|>", "<|system|>", "[PAD151650]", "<reponame>", "<file_sep>", "<fim_prefix>",
    "<|reserved_special_token_5|>",
]

HAND = [
    # prose and punctuation
    "Hello world", " Hello world", "Hello World!", "Hello, world!", "  Hello", "    Hello\n    Hello",
    "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "a", "A", "?", "...", "!!!???",
    "Mr. O'Neil's dog -- it's 3:45 p.m. -- isn't here.", "e.g. i.e. etc.", "(parenthesised) [bracketed] {braced}",
    "\"double\" 'single' `back`", "semi;colon:colon", "hyphen-ated under_scored slash/ed back\\slashed",
    "C'est la vie, n'est-ce pas?", "L'été dernier à Paris", "¿Qué tal? ¡Muy bien!",
    # contractions, all cases
    "I'm you're he's she'd we've they'll it's", "I'M YOU'RE HE'S SHE'D WE'VE THEY'LL IT'S",
    "I'm You'Re He'S She'd We'vE They'Ll", "'s 't 're 've 'm 'll 'd", "' s ' t", "don't won't can't shouldn't",
    "y'all ma'am o'clock rock'n'roll", "'", "''", "'''", "' era", "It''s", "'S'T'RE'VE'M'LL'D",
    # whitespace
    " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\t\n", " \n", "\n ", " \n ", "\r\n", "\r\n\r\n",
    "\r", "a\rb", "line1\nline2\r\nline3\rline4", "trailing spaces   ", "   leading spaces", "a  b   c    d",
    "tab\tseparated\tvalues", "mixed \t \n \r\n whitespace", "\u00a0non-breaking\u00a0space", "ideographic\u3000space",
    "en\u2002em\u2003thin\u2009spaces", "line\u2028separator\u2029para", "zero\u200bwidth\u200cjoiner\u200d",
    "\x0b vertical \x0c formfeed", "\x1c\x1d\x1e\x1f unit separators", "nel\u0085char", "ogham\u1680space",
    "  \n\n  \t\t\n", "x \n\n y", "\n\n\n\n\nend",
    # numbers
    "0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890",
    "12345678901234567890", "3.14159", "-273.15", "1,234,567.89", "1e-10", "0x1F 0b1010 0o17", "+1 (555) 012-3456",
    "2024-06-01T12:34:56Z", "v1.2.3-rc4", "w048 7tuijk dsdfhu", "x²+y³=z⁴", "½ ¼ ¾ ⅞", "Ⅻ ⅻ ⅷ", "١٢٣ ४५६ ๗๘๙",
    "3333333", "33333333", "333333333", "a1b22c333d4444", "100%", "$100.00", "€50 £20 ¥1000",
    # scripts
    "нещо на Български", "Привет, как дела?", "Γειά σου Κόσμε", "Καλημέρα σας",
    "שלום עולם", "مرحبا بالعالم", "السلام عليكم ورحمة الله", "नमस्ते दुनिया", "हिन्दी में लिखा पाठ",
    "বাংলা ভাষা", "தமிழ் மொழி", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "ภาษาไทย สวัสดี", "ພາສາລາວ",
    "ကြိုဆိုပါတယ်", "កាន់តែពិសេសអាចខលចេញ", "ქართული ენა", "Հայերեն լեզու", "አማርኛ ቋንቋ",
    "你好，世界！", "我想在apple工作1314151天～", "日本語のテキストです。", "カタカナ ひらがな 漢字",
    "한국어 텍스트입니다", "Tiếng Việt có dấu", "Ελληνικά και English mixed", "Zürich Straße Œuvre Ærø",
    "e\u0301 a\u0300 n\u0303 (combining)", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334", "ﬁﬂ ligatures ﬀ",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ １２３", "𝕄𝕒𝕥𝕙 𝔽𝕣𝕒𝕜𝕥𝕦𝕣", "𐐀𐐁 Deseret", "ᏣᎳᎩ Cherokee", "\U0001e900\U0001e922 Adlam",
    # emoji and symbols
    "🦙", "🦙🦙🦙", " this is 🦙.cpp", "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)",
    "👍🏽 👩‍👩‍👧‍👦 🇫🇷🇯🇵 🏳️‍🌈", "❤️ ♥ ☺ ☃ ★ ☆", "→ ← ↑ ↓ ⇒ ∀ ∃ ∈ ∑ √ ∞ ≈ ≠ ≤ ≥", "© ® ™ § ¶ † ‡ • …",
    "«guillemets» „quotes“ ‘single’ “double”", "—em dash– en dash", "°C µs Ω Å K", "⌘⌥⇧ ⏎ ␣",
    # code
    "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "const x = () => { return `tpl ${y}`; };", "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); }",
    "SELECT * FROM users WHERE id = 42;", "<div class=\"a\"><p>Hi &amp; bye</p></div>",
    "{\"key\": [1, 2.5, true, null], \"s\": \"\\u00e9\"}", "if x != y && z >= 3 || !w: pass",
    "a+=1; b-=2; c*=3; d/=4; e%=5; f**=6; g//=7", "x<<=1 y>>=2 z^=3 w|=4 v&=5 u~=6",
    "$ ls -la | grep '.py' > out.txt 2>&1", "    \n    \n        nested\n", "```python\nprint('x')\n```",
    "__init__ __main__ self.__dict__", "camelCaseIdentifier snake_case_identifier SCREAMING_CASE",
    "https://example.com/path?q=1&r=two#frag", "user@example.com", "C:\\Windows\\System32\\drivers",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<s>[INST] Hello [/INST] Hi</s>", "<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>",
    "text<|endoftext|>more text", "<|endoftext|><|endoftext|>", "<|im_start|> spaced <|im_end|> out ",
    "<unk> unknown </s> end <s> start", "[PAD151650] padding [PAD151651]", "<reponame>realm<file_sep>main.c",
    "<|im_start", "im_start|>", "<|<|im_start|>|>", "<<|endoftext|>>",
]

INVALID = [
    b"\xff", b"\xfe\xff", b"abc\x80def", b"\xc3", b"\xe2\x82", b"\xf0\x9f\xa6", b"ok \xc3\x28 bad",
    b"\xed\xa0\x80 surrogate", b"\xc0\x80 overlong", b"\x00nul\x00",
    b"\xe2\x96\x81 pre-escaped", "▁▁ already ▁ escaped".encode(),
]

POOL = [
    "hello", "World", "don't", "I'M", " ", "  ", "\t", "\n", "\r\n", "\n\n", "123", "4567890", "3.5", ",", ".",
    "!", "?", "'s", "'LL", "(", ")", "->", "==", "::", "//", "#", "@", "$", "%", "^", "&", "*", "_", "~", "`",
    "é", "ñ", "ß", "日本", "中文", "한국", "русский", "ελληνικά", "عربي", "हिन्दी", "ไทย", "🦙", "👍🏽", "😀",
    "\u00a0", "\u3000", "\u200b", "e\u0301", "①", "²", "Ⅳ", "€", "→", "∑", "ﬁ",
]


def corpus() -> list[bytes]:
    out = [s.encode("utf-8") for s in HAND]
    out += INVALID
    # numbers of every length, alone and after a space
    for n in range(1, 26):
        digits = "".join(str((i * 7 + 3) % 10) for i in range(n))
        out.append(digits.encode())
        out.append((" " + digits).encode())
    # special token texts inside text, with and without surrounding spaces
    for i, sp in enumerate(SPECIAL_TEXTS):
        out.append(f"Hi{sp}there".encode())
        out.append(f" a {sp} b \n{sp}\n".encode())
        if i % 3 == 0:
            out.append(sp.encode())
    # seeded random mixes
    rng = random.Random(20240601)
    for _ in range(110):
        k = rng.randint(1, 14)
        out.append("".join(rng.choice(POOL) for _ in range(k)).encode())
    # one long text (about 2 KB)
    out.append(("\n".join(HAND[:60]) + " " + "".join(POOL) * 3).encode()[:2048].decode("utf-8", "ignore").encode())
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


if __name__ == "__main__":
    c = corpus()
    print(len(c), "strings,", sum(map(len, c)), "bytes")
