#!/usr/bin/env python3
"""Writes the golden encodings that //runtime/tokenizer:tokenizer_golden_test checks.

Runs where Hugging Face `tokenizers` is installed (the GPU machine: tokenizers 0.23,
Python 3.12), from a checkout of this repository:

  python3 tools/goldens/make_tokenizer_goldens.py \
      --tokenizer models/NAME/tokenizer.json \
      --strings tests/golden/tokenizer/strings.json \
      --out tests/golden/tokenizer/NAME.golden.json

The tokenizer.json must lie inside the repository: the golden file records its path
relative to the repository root, and the test reads it from there (add it to the test's
`data`). For every input string the file holds the ids with and without special tokens
and the decodes of those ids.
"""

import argparse
import json
import pathlib
import sys

import tokenizers

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, help="path to tokenizer.json")
    parser.add_argument("--strings", required=True, help="tests/golden/tokenizer/strings.json")
    parser.add_argument("--out", required=True, help="output, named *.golden.json")
    args = parser.parse_args()

    tokenizer_path = pathlib.Path(args.tokenizer).resolve()
    try:
        relative = tokenizer_path.relative_to(REPO_ROOT)
    except ValueError:
        sys.exit(f"{tokenizer_path} is not inside the repository {REPO_ROOT}")
    if not args.out.endswith(".golden.json"):
        sys.exit("--out must end in .golden.json (the golden test globs for that)")

    tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
    with open(args.strings, encoding="utf-8") as f:
        strings = json.load(f)["strings"]

    cases = []
    for text in strings:
        ids = tokenizer.encode(text, add_special_tokens=True).ids
        ids_no_special = tokenizer.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": ids,
            "ids_no_special": ids_no_special,
            "decoded": tokenizer.decode(ids, skip_special_tokens=False),
            "decoded_no_special": tokenizer.decode(ids_no_special, skip_special_tokens=False),
            "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        })

    golden = {
        "tokenizer": relative.as_posix(),
        "tokenizers_version": tokenizers.__version__,
        "strings": args.strings,
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{args.out}: {len(cases)} cases from {relative} (tokenizers {tokenizers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
