#!/usr/bin/env python3
"""Writes the small tokenizer.json files of the tokenizer's unit tests.

  python3 runtime/tokenizer/testdata/make_testdata.py

Vocabulary: the 256 byte-level characters, id = byte value (so 'H' is 72 and the space
character 'Ġ' is 32), then the results of MERGES in order (ids 256...), then EXTRA.
The expected encodings in tokenizer_test.cc are worked out by hand from these lists
(see the comments there).
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

MERGES = [  # rank: left right -> result (id 256 + rank)
    ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"),   # 0-4: Ġworld = 260
    ("H", "e"), ("l", "l"), ("He", "ll"), ("Hell", "o"),                # 5-8: Hello = 264
    ("!", "!"), ("Ċ", "Ċ"), ("Ġ", "Ġ"), ("'", "s"),                     # 9-12
    ("1", "2"), ("3", "4"), ("'", "T"), ("a", "a"), ("h", "i"),         # 13-17
    ("Ã", "©"),                                                         # 18: "é" = 274
]
EXTRA = ["Ġxyz"]  # 275: reachable only as a whole word (ignore_merges)


def bytes_to_unicode():
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))
                 + list(range(0xAE, 0x100)))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def vocab():
    v = {c: b for b, c in bytes_to_unicode().items()}
    for left, right in MERGES:
        v[left + right] = len(v)
    for token in EXTRA:
        v[token] = len(v)
    return v


def added(id_, content, special=True):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": not special, "special": special}


def tokenizer(pre_tokenizer, post_processor, added_tokens, ignore_merges):
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                  "vocab": vocab(), "merges": [f"{l} {r}" for l, r in MERGES]},
    }


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def main():
    n = len(vocab())  # 276: the first id for added tokens
    gpt2 = tokenizer(
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        [added(n, "<|endoftext|>")],
        ignore_merges=False)
    llama3 = tokenizer(
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {
                 "id": "<|begin_of_text|>", "ids": [n], "tokens": ["<|begin_of_text|>"]}}}]},
        [added(n, "<|begin_of_text|>"), added(n + 1, "<|end_of_text|>"),
         added(n + 2, "<|eot_id|>"), added(n + 3, "<tool>", special=False)],
        ignore_merges=True)
    for name, t in [("gpt2_tiny.json", gpt2), ("llama3_tiny.json", llama3)]:
        with open(HERE / name, "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
