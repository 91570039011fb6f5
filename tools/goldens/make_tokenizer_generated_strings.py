#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/generated_strings.json: 10,000 random inputs for the
tokenizer goldens of every family (tools/goldens/make_tokenizer_goldens*.{py,js}).

Standard library only, seeded: rerunning it rewrites the same file.

  python3 tools/goldens/make_tokenizer_generated_strings.py \
      --out tests/golden/tokenizer/generated_strings.json

Each string joins 1 to 6 fragments drawn from kinds that stress normalizers,
pre-tokenizers, byte fallback and decoders: scripts, precomposed and decomposed letters,
stacked combining marks in any order, Hangul syllables and jamo, compatibility characters
(NFKC), emoji with ZWJ, skin tones and flags, whitespace runs of every kind, control
characters, "▁" and "<0xNN>" spelled out, special-token spellings, code, long repeats.
"""

import argparse
import json
import random

SEED = 20261205
COUNT = 10_000

WORDS = ["the", "The", "hello", "world", "tokenizer", "don't", "I'M", "we'll", "café",
         "naïve", "Straße", "def", "return", "self", "print(x)", "x_1", "über", "x"]
SCRIPTS = [
    "Ελληνικά γλώσσα", "Русский язык", "עברית", "العربية لغة", "हिन्दी भाषा", "ภาษาไทย",
    "中文分词测试", "日本語のテキスト", "カタカナ", "한국어 텍스트", "Tiếng Việt", "ქართული",
    "Հայերեն", "ᎣᏏᏲ", "ꦗꦮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𐍈𐌰𐌹", "ᚠᛇᚻ",
]
COMBINING = [chr(c) for c in [0x300, 0x301, 0x302, 0x303, 0x308, 0x323, 0x327, 0x328, 0x331,
                              0x345, 0x35C, 0x361, 0x5B0, 0x64B, 0x93C, 0x94D, 0x3099, 0x309A,
                              0x1AB0, 0x20D7, 0xFE20]]
BASES = "aeiouAEIOUnNcCsSzZyYαωЕиかはカ"
COMPAT = ["ﬁ", "ﬀ", "①", "⑩", "Ⅻ", "ｆｕｌｌ", "ＡＢＣ", "１２３", "㎏", "㍻", "™", "½", "x²", "ſ",
          "ﾊﾝｶｸ", "Å", "Ω", "K", "Ǆ", "ǅ", "ℌ", "ℍ", "…", "⁇", "〔", "︵", "ﷺ", "ﹰ", "ㄱ", "ᄀ"]
EMOJI = ["😀", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "❤️", "🧑🏿‍🚀", "🤷‍♀️", "1️⃣",
         "#️⃣", "🫠", "🪿", "🙂‍↔️"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000",
          "\u2028", "\u2029", "\u200b", "\u2003", "\u180e", "\u0085", "\f", "\v"]
SPELLED = ["▁", "▁▁", "▁x", "x▁", "<0x41>", "<0xE2>", "<0xzz>", "<0x+F>", "<unk>", "<s>", "</s>",
           "<|endoftext|>", "<|im_start|>", "<｜begin▁of▁sentence｜>", "[INST]", "[/INST]",
           "<think>", "<tool_call>", "<|fim_prefix|>", "[control_8]", "<s >", "<<s>>"]
CODE = ["def f(x):\n    return x ** 2", "for (int i = 0; i < n; ++i) {}", "if a != b:",
        "#include <stdio.h>", "a_b-c.d/e\\f", "x = {'k': [1, 2.5e-3]}", "    ", "1234567890",
        "3.14159", "1,000,000", "0x1F", "--flag=value", "https://example.com/a?b=c"]
NEW_IN_UNICODE_16 = ["\U00016D68", "\U00016D67\U00016D67", "\U000113C2\U000113B8",
                     "\U00011383\U000113C9", "\U0001E5F0", "\U00010D69", "\U0001CC00"]


def hangul(rng):
    if rng.random() < 0.5:
        return "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 4)))
    # Conjoining jamo: L V (T), which NFC composes into a syllable.
    out = ""
    for _ in range(rng.randint(1, 3)):
        out += chr(rng.randint(0x1100, 0x1112)) + chr(rng.randint(0x1161, 0x1175))
        if rng.random() < 0.5:
            out += chr(rng.randint(0x11A8, 0x11C2))
    return out


def marks(rng):
    return rng.choice(BASES) + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 4)))


def control(rng):
    cps = list(range(0, 32)) + [0x7F] + list(range(0x80, 0xA0)) + [0xAD, 0xFEFF, 0xFFFD, 0xFFFF]
    return "".join(chr(rng.choice(cps)) for _ in range(rng.randint(1, 3)))


def repeat(rng):
    unit = rng.choice(["a", "ab", " ", "▁", "é", "😀", "-", "\n", "的", "e\u0301", "<0x41>"])
    return unit * rng.randint(10, 60)


def random_code_point(rng):
    while True:
        c = rng.randint(0x20, 0x2FFFF)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def fragment(rng):
    kind = rng.randrange(14)
    if kind == 0: return rng.choice(WORDS)
    if kind == 1: return rng.choice(SCRIPTS)
    if kind == 2: return marks(rng)
    if kind == 3: return hangul(rng)
    if kind == 4: return rng.choice(COMPAT)
    if kind == 5: return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if kind == 6: return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 4)))
    if kind == 7: return control(rng)
    if kind == 8: return rng.choice(SPELLED)
    if kind == 9: return rng.choice(CODE)
    if kind == 10: return repeat(rng) if rng.random() < 0.3 else rng.choice(WORDS) * 2
    if kind == 11: return rng.choice(NEW_IN_UNICODE_16)
    if kind == 12: return "".join(random_code_point(rng) for _ in range(rng.randint(1, 3)))
    return str(rng.randint(0, 10 ** rng.randint(1, 12)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = random.Random(SEED)
    strings = []
    for _ in range(COUNT):
        parts = [fragment(rng) for _ in range(rng.randint(1, 6))]
        sep = rng.choice(["", " ", " ", "\n"])
        strings.append(sep.join(parts))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/goldens/make_tokenizer_generated_strings.py", "seed": SEED,
                   "strings": strings}, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{args.out}: {len(strings)} strings")


if __name__ == "__main__":
    main()
