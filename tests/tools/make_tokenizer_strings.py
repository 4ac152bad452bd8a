#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/strings.jsonl: the strings every tokenizer
fixture is made from. Hand-written edge cases plus lines sampled (fixed seed)
from the shared evaluation texts. Usage: make_tokenizer_strings.py SHARED_DIR"""
import json, random, sys, pathlib

HAND = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "a", " a", "a ", "  a  b   c    ",
    "Hello world", "Hello  world", "Hello\tworld", "Hello\nworld", "Hello\r\nworld",
    "hello   \n\n   world", "trailing spaces   ", "   leading spaces",
    "0", "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42", "+7",
    "2024-11-22", "10:30pm", "v1.2.3", "0x1F600", "1e-5", "99%", "$5.00", "€20", "£3", "¥100",
    "I'm", "you're", "we've", "they'll", "she'd", "it's", "DON'T", "I'M", "o'clock", "'quoted'",
    "\"double\"", "rock 'n' roll", "can't won't shouldn't",
    "café", "naïve", "résumé", "Zürich", "São Paulo", "Ångström", "Œuvre", "straße", "İstanbul",
    "cafe\u0301", "e\u0301\u0301", "\u212b", "ﬁ ligature", "ＡＢＣ fullwidth",
    "Привет, мир!", "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย", "한국어", "日本語のテキスト",
    "中文字符测试", "混合 mixed テキスト", "Tiếng Việt", "ქართული",
    "😀", "😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "I ❤️ NY", "a😀b", " 😀 ", "🤖🚀✨", "⚡️",
    "∑ ∫ √ ∞ ≠ ≤", "→ ← ↑ ↓", "©®™", "°C", "½ ¾", "…", "—en–dash", "«guillemets»", "„quotes“",
    "def foo(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "if x == 1 and y != 2:", "#include <stdio.h>", "printf(\"%d\\n\", x);", "a && b || !c",
    "x += 1; y -= 2;", "arr[0][1]", "obj.method().chain()", "https://example.com/path?q=1&r=2",
    "user@example.com", "C:\\Windows\\System32", "/usr/local/bin", "<html><body>hi</body></html>",
    "{\"key\": [1, 2, 3]}", "SELECT * FROM t WHERE id = 1;", "    indented", "\t\ttabs",
    "camelCaseIdentifier", "snake_case_identifier", "SCREAMING_CASE", "kebab-case-id",
    "<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "[INST] hi [/INST]",
    "text<s>inside", "a</s>b", "<s> <s>", "<<>>", "< s >",
    "▁", "▁▁", "a▁b", "Ġ", "Ċ", "\u00a0nbsp", "zero\u200bwidth", "\u3000ideographic space",
    "!!!", "???", "...", "---", "___", "***", "~~~", "@@@", "###", "a.b.c", "(a)", "[b]", "{c}",
    "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "tHe QuIcK",
    "Once upon a time, there was a little girl named Lily.", "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 50, "ab" * 40, " " * 30 + "x", "\n" * 10, "1" * 40, "😀" * 10,
]

def main():
    shared = pathlib.Path(sys.argv[1])
    rng = random.Random(1234)
    lines = []
    for rel in ["data/gutenberg/eval/pg35_The_Time_Machine.txt",
                "data/gutenberg/eval/pg11_Alices_Adventures_in_Wonderland.txt",
                "data/tinystories/tinystories_valid_sample.txt",
                "data/wikitext2/wiki.test.raw"]:
        text = (shared / rel).read_text(encoding="utf-8")
        pool = [l for l in text.split("\n") if l.strip()]
        lines += rng.sample(pool, 40)
        # multi-line passages keep newlines and indentation runs
        for _ in range(10):
            i = rng.randrange(len(text) - 600)
            lines.append(text[i:i + rng.randrange(50, 600)])
    out = pathlib.Path(__file__).resolve().parents[1] / "fixtures/tokenizer/strings.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for s in HAND + lines:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    print(f"{len(HAND) + len(lines)} strings -> {out}")

main()
