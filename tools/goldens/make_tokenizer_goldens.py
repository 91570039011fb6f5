#!/usr/bin/env python3
"""Writes the golden encodings that //runtime/tokenizer:tokenizer_golden_test checks.

Runs where Hugging Face `tokenizers` is installed (the GPU machine: tokenizers 0.23,
Python 3.12), from a checkout of this repository. Every family of
tools/goldens/families.json, into a folder (then copied to tests/golden/tokenizer/):

  python3 tools/goldens/make_tokenizer_goldens.py --families --out_dir /tmp/tokenizer_goldens

One tokenizer and one strings file:

  python3 tools/goldens/make_tokenizer_goldens.py \
      --tokenizer models/NAME/tokenizer.json \
      --strings tests/golden/tokenizer/strings.json \
      --out tests/golden/tokenizer/NAME.golden.json

--families writes NAME.golden.json (strings.json, each case with its text) and, where the
family says generated, NAME.generated.golden.json (generated_strings.json: cases by index,
values equal to their default left out, as compact() says), the same files as
make_tokenizer_goldens.js writes with the Node binding.

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


def compact(text, case, prefix):
    """Leaves out what equals its default (the rule of tokenizer_golden_test.cc)."""
    out = {"ids": case["ids"]}
    ids = case["ids"]
    plain = ids[len(prefix):] if ids[:len(prefix)] == prefix else ids
    if case["ids_no_special"] != plain:
        out["ids_no_special"] = case["ids_no_special"]
    if case["decoded_no_special"] != text:
        out["decoded_no_special"] = case["decoded_no_special"]
    if case["decoded_skip_special"] != case["decoded_no_special"]:
        out["decoded_skip_special"] = case["decoded_skip_special"]
    if case["decoded"] != case["decoded_skip_special"]:
        out["decoded"] = case["decoded"]
    return out


def family_golden(tokenizer_rel, strings_rel, with_text):
    tokenizer = tokenizers.Tokenizer.from_file(str(REPO_ROOT / tokenizer_rel))
    with open(REPO_ROOT / strings_rel, encoding="utf-8") as f:
        strings = json.load(f)["strings"]
    prefix = tokenizer.encode("", add_special_tokens=True).ids
    cases = []
    for text in strings:
        case = encode_case(tokenizer, text)
        cases.append(case if with_text else compact(text, case, prefix))
    return {"tokenizer": tokenizer_rel, "tokenizers_version": tokenizers.__version__,
            "tokenizers_binding": "python", "strings": strings_rel,
            "text_from_strings": not with_text, "ids_prefix": prefix, "cases": cases}


def write_compact(path, golden):
    """One case a line, as make_tokenizer_goldens.js writes them."""
    head = json.dumps({k: v for k, v in golden.items() if k != "cases"}, ensure_ascii=False)
    body = ",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":"))
                      for c in golden["cases"])
    with open(path, "w", encoding="utf-8") as f:
        f.write(head[:-1] + ',"cases":[\n' + body + "\n]}\n")
    print(f"{path}: {len(golden['cases'])} cases from {golden['tokenizer']} "
          f"(tokenizers {tokenizers.__version__}, python)")


def families(out_dir):
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(pathlib.Path(__file__).with_name("families.json"), encoding="utf-8") as f:
        spec = json.load(f)
    for name, family in spec["families"].items():
        write_compact(out / f"{name}.golden.json",
                      family_golden(family["tokenizer"], spec["strings"], True))
        if family["generated"]:
            write_compact(out / f"{name}.generated.golden.json",
                          family_golden(family["tokenizer"], spec["generated_strings"], False))
    return 0


def encode_case(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=True).ids
    ids_no_special = tokenizer.encode(text, add_special_tokens=False).ids
    return {
        "text": text,
        "ids": ids,
        "ids_no_special": ids_no_special,
        "decoded": tokenizer.decode(ids, skip_special_tokens=False),
        "decoded_no_special": tokenizer.decode(ids_no_special, skip_special_tokens=False),
        "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", action="store_true", help="every family of families.json")
    parser.add_argument("--out_dir", help="with --families: the output folder")
    parser.add_argument("--tokenizer", help="path to tokenizer.json")
    parser.add_argument("--strings", help="tests/golden/tokenizer/strings.json")
    parser.add_argument("--out", help="output, named *.golden.json")
    args = parser.parse_args()
    if args.families:
        if not args.out_dir:
            sys.exit("--families needs --out_dir")
        return families(args.out_dir)
    if not (args.tokenizer and args.strings and args.out):
        sys.exit("give --families --out_dir DIR, or --tokenizer, --strings and --out")

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

    cases = [encode_case(tokenizer, text) for text in strings]

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
