#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/strings.json: the inputs of the tokenizer golden test.

Standard library only, deterministic (fixed seed): rerunning it rewrites the same file.

  python3 tools/goldens/make_tokenizer_strings.py --out tests/golden/tokenizer/strings.json

The strings aim at the places where a byte-level BPE tokenizer can go wrong: regex
splitting (contractions, digit groups, whitespace runs, punctuation runs), scripts of
many kinds and multi-byte UTF-8, special tokens inside text, and long inputs.
"""

import argparse
import json
import random

SEED = 20261123

# Written out by hand: each one aims at one rule.
EDGE_CASES = [
    "",
    " ",
    "  ",
    "a",
    " a",
    "a ",
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    " \t \n ",
    "Hello world!!  \n\n  x",
    "Hello, world! How are you?",
    "hello world",
    "Hello World",
    "HELLO WORLD",
    # contractions, both cases and mixed
    "don't", "DON'T", "Don't", "it's", "IT'S", "It'S", "we'll", "WE'LL", "they're", "THEY'RE",
    "I've", "I'VE", "she'd", "SHE'D", "I'm", "I'M", "'s", "'S", "'t", "''", "'", "' s",
    "rock 'n' roll", "the dogs' bones", "O'Neil's café", "can't won't shouldn't",
    "It\u2019s curly", "`backtick'quote\"double\"",
    # numbers
    "0", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159", "-2.5e-10", "1,000,000", "1.000.000,00", "$1,234.56", "100%", "10^9",
    "v1.2.3", "2026-11-23T09:00:00Z", "192.168.0.1", "0xDEADBEEF", "1e100",
    "abc123def4567ghi", "x1y22z333w4444",
    "\u0663\u0664\u0665 Arabic-Indic digits", "\uff11\uff12\uff13 fullwidth digits",
    "\u00bd \u00b2 \u2167 \u2460 number-like symbols",
    # whitespace
    "trailing spaces   ", "   leading spaces", "a  b   c    d", "tab\tseparated\tvalues",
    "line one\nline two\n", "windows\r\nline\r\nendings\r\n", "mac\rline\rendings",
    "    \n    \n", "\n\n\n\n", "x\n \n \ny", " \n", "\n ", "a\u00a0b", "a\u3000b",
    "a\u2028b\u2029c", "a\u0085b", "a\u180eb", "a\u200bb", "\ufeffBOM first", "a\u000bb\u000cc",
    # punctuation
    "!!!!!!", "?!?!?!", "...", "\u2026", "----------", "==========", "**bold**", "__init__",
    "(((nested)))", "[[a]], {{b}}", "a->b=>c", "<<< >>>", "#!/bin/sh", "@user #tag",
    "\"quoted\"", "\u00abguillemets\u00bb", "\u201ccurly\u201d", "!!!   ???",
    # scripts
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u4eca\u65e5\u306f\u3044\u3044\u5929\u6c17\u3067\u3059\u306d\u3002",
    "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
    "\u1780\u1798\u17d2\u1796\u17bb\u1787\u17b6", "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
    "\u0532\u0561\u0580\u0565\u0582", "\u12a0\u121b\u122d\u129b", "\u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd",
    "Vi\u1ec7t Nam", "na\u00efve fa\u00e7ade \u00fcber \u00c5ngstr\u00f6m", "\u0130stanbul \u0131\u015f\u0131k",
    "Stra\u00dfe STRASSE", "\u017fs long s", "\u212a Kelvin", "\ufb01ligature",
    # combining marks and normalization forms
    "e\u0301", "\u00e9", "a\u0308o\u0308u\u0308", "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307lgo",
    "\u1100\u1161\u11a8 jamo", "\u0915\u094d\u200d\u0937 zwj in devanagari",
    # emoji: single, 4-byte, skin tones, ZWJ sequences, flags, keycaps
    "\U0001f600", "\U0001f600\U0001f601\U0001f602", "I \u2764\ufe0f NY", "\U0001f44d\U0001f3fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f3f3\ufe0f\u200d\U0001f308",
    "\U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5", "1\ufe0f\u20e3 #\ufe0f\u20e3",
    "\U0001f9d1\U0001f3fb\u200d\U0001f4bb coding", "emoji\U0001f680in\U0001f680words",
    "\U0001d400\U0001d401 math bold", "\U00020000 cjk ext b", "\U0001f0cf\U0001f004",
    # special tokens (Llama-3 names; plain text for tokenizers without them)
    "<|begin_of_text|>hi<|end_of_text|>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|begin_of_text|><|begin_of_text|>",
    "<|begin_of_text|> hi",
    "hi <|end_of_text|> ",
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|eot_id|><|eom_id|><|python_tag|><|finetune_right_pad_id|>",
    "<|reserved_special_token_0|>x<|reserved_special_token_250|>",
    "<|begin_of_text", "<|begin_of_text|", "<<|begin_of_text|>>", "|<|end_of_text|>|",
    "<s>hi</s>", "<|endoftext|>", "<unk><pad>",
    # long inputs
    "a" * 1000,
    " " * 300,
    "\n" * 200,
    "ab" * 400,
    "supercalifragilisticexpialidocious" * 20,
    "\u4e2d" * 300,
    "\U0001f600" * 100,
    "9" * 500,
    "!" * 500,
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30,
]

CODE = [
    'def fib(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n'
    '    for _ in range(n):\n        a, b = b, a + b\n    return a\n',
    "import os, sys\nfrom pathlib import Path\n\nif __name__ == '__main__':\n"
    "    print(f\"{sys.argv[0]}: {os.getcwd()!r}\")\n",
    "class Foo(Base):\n\tdef __init__(self, x: int = 3) -> None:\n\t\tself._x = x  # tabs\n",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n  for (int i = 0; i < argc; ++i)\n"
    "    printf(\"%d: %s\\n\", i, argv[i]);\n  return 0;\n}\n",
    "template <typename T>\nstd::vector<T> f(const std::map<int, T>& m) { return {}; }\n",
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}'\ndone\n"
    "echo $((1 + 2)) && ls -la ~/ 2>&1 | grep -v '^total'\n",
    '{"name": "tokenizer", "version": 1, "values": [1, 2.5, -3e4, true, null],\n'
    ' "nested": {"k": "v\\u00e9", "empty": {}}}\n',
    "<html>\n  <body class=\"main\">\n    <p>Hello &amp; welcome</p>\n  </body>\n</html>\n",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%' ORDER BY id DESC;\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "    \n        \n    return x;;\n\n\n\n}",
    "x=1;y=2;z=x+y;print(z)#comment\r\n",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "https://example.com/path/to/page?query=1&other=two#frag",
    "user.name+tag@example.co.uk",
    "diff --git a/f.py b/f.py\n@@ -1,3 +1,4 @@\n-old line\n+new line\n  context\n",
]

# Fragments that the random strings are built from.
WORDS = ["the", "The", "THE", "cat", "naïve", "résumé", "Straße", "日本語", "中文", "한국어",
         "русский", "العربية", "हिन्दी", "ελληνικά", "don't", "I'M", "we've", "it's", "x",
         "foo_bar", "camelCase", "snake_case", "HTTPServer", "i18n", "v2", "42", "3.14",
         "1,000", "007", "2026", "😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "e\u0301", "…", "—", "“", "”",
         "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "(", ")", "{", "}", "[", "]",
         ";", ":", ",", ".", "!", "?", "'", '"', "#", "$", "%", "&", "*", "+", "-", "=",
         "/", "\\", "|", "~", "^", "`", "@", "<", ">"]
SPACES = [" ", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0",
          "\u3000", ""]
ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    "\u00e0\u00e1\u00e2\u00e3\u00e4\u00e5\u00e6\u00e7\u00e8\u00e9\u00ea\u00eb\u00f1\u00f6\u00f8\u00fc\u00df",
    "\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u0439\u043a\u043b\u043c\u043d\u043e\u043f",
    "\u4e00\u4e8c\u4e09\u56db\u4e94\u516d\u4e03\u516b\u4e5d\u5341\u4eba\u5927\u5c0f\u5c71\u5ddd",
    "\u3042\u3044\u3046\u3048\u304a\u30a2\u30a4\u30a6\u30a8\u30aa",
    "\u0627\u0628\u062a\u062b\u062c\u062d\u062e\u062f\u0630\u0631",
    "\u0905\u0906\u0907\u0908\u0909\u090a\u0915\u0916\u0917\u093e\u093f\u0940\u094d",
    "!@#$%^&*()_+-=[]{};':\",./<>?\\|`~",
    " \t\n\r",
    "\U0001f600\U0001f601\U0001f602\U0001f923\U0001f60a\U0001f680\u2764\ufe0f\u200d",
    "\u0300\u0301\u0302\u0303\u0308",
]


def random_sentence(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 25)):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SPACES))
    return "".join(parts)


def random_chars(rng: random.Random) -> str:
    alphabet = "".join(rng.sample(ALPHABETS, rng.randint(1, 4)))
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))


def random_whitespace(rng: random.Random) -> str:
    pieces = [" ", "\t", "\n", "\r\n", "  ", "x", "y z"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))


def make_strings() -> list:
    rng = random.Random(SEED)
    strings = list(EDGE_CASES) + list(CODE)
    strings += [random_sentence(rng) for _ in range(120)]
    strings += [random_chars(rng) for _ in range(100)]
    strings += [random_whitespace(rng) for _ in range(40)]
    strings += ["".join(rng.choice("0123456789.,") for _ in range(rng.randint(1, 40)))
                for _ in range(20)]
    seen, unique = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    strings = make_strings()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/goldens/make_tokenizer_strings.py", "seed": SEED,
                   "strings": strings}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{args.out}: {len(strings)} strings")


if __name__ == "__main__":
    main()
