#!/usr/bin/env python3
"""Writes the SentencePiece-style tokenizer.json files of spm_tokenizer_test.cc.

  python3 runtime/tokenizer/testdata/make_spm_testdata.py

Vocabulary (ids readable by hand): <unk> 0, <s> 1, </s> 2, then "<0xNN>" = 3 + NN
(llama2_tiny only), then the characters of CHARS, then the results of MERGES in order.
llama2_tiny.json has Llama-2's normalizer, decoder and model options (byte_fallback,
fuse_unk); mistral_tiny.json Mistral v0.3's Metaspace pre-tokenizer (prepend_scheme
first) with the Metaspace decoder and no byte tokens, so unknown characters give <unk>.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
SPM = "\u2581"
CHARS = [SPM, "a", "b", "c", "H", "i", "!"]
MERGES = [(SPM, "a"), (SPM + "a", "b"), ("H", "i")]


def vocab(byte_tokens):
    v = {"<unk>": 0, "<s>": 1, "</s>": 2}
    if byte_tokens:
        for b in range(256):
            v[f"<0x{b:02X}>"] = len(v)
    for token in CHARS + [a + b for a, b in MERGES]:
        v[token] = len(v)
    return v


def added(id_, content, special=True, normalized=False, lstrip=False, rstrip=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def tokenizer(byte_tokens, normalizer, pre_tokenizer, decoder):
    v = vocab(byte_tokens)
    n = len(v)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"),
                         # normalized: looked for in the normalized text, as "▁ab!"
                         added(n, "ab!", special=False, normalized=True),
                         added(n + 1, "<x>", lstrip=True, rstrip=True)],
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": byte_tokens, "ignore_merges": False,
                  "vocab": v, "merges": [f"{a} {b}" for a, b in MERGES]},
    }


def main():
    llama2 = tokenizer(
        True,
        {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPM},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPM}]},
        None,
        {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPM}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    metaspace = {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "first",
                 "split": False}
    mistral = tokenizer(False, None, metaspace, metaspace)
    for name, t in [("llama2_tiny.json", llama2), ("mistral_tiny.json", mistral)]:
        with open(HERE / name, "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
