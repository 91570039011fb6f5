#!/usr/bin/env python3
"""Writes one small tokenizer.json per model family into tests/golden/tokenizer/.

Standard library only, deterministic: rerunning it rewrites the same files.

  python3 tools/goldens/make_tokenizer_families.py --out_dir tests/golden/tokenizer

Each file keeps the normalizer, pre_tokenizer, model options, decoder, post_processor and
added-token flags of the real family's tokenizer.json (docs/TOKENIZER.md names the real
file of each section); only the vocabulary is small: a BPE trained here on the golden
strings and some Python standard-library source, so each file stays under 200 KB.
"""

import argparse
import collections
import glob
import json
import pathlib
import re

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SPM = "\u2581"  # SentencePiece's meta space, "▁"

# --- real sections -----------------------------------------------------------------

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK_PATTERNS = [
    r"\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]


def byte_level(add_prefix_space, trim_offsets, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space,
            "trim_offsets": trim_offsets, "use_regex": use_regex}


def split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
            "invert": False}


def added(id_, content, special=True, normalized=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": normalized, "special": special}


def bos_template(bos, bos_id):
    seq = lambda s, t: {"Sequence": {"id": s, "type_id": t}}
    tok = lambda t: {"SpecialToken": {"id": bos, "type_id": t}}
    return {"type": "TemplateProcessing", "single": [tok(0), seq("A", 0)],
            "pair": [tok(0), seq("A", 0), tok(1), seq("B", 1)],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


SPM_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": SPM}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def spm_model(vocab, merges):
    return {"type": "BPE", "dropout": None, "unk_token": "<unk>",
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
            "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges}


def byte_model(vocab, merges):
    return {"type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
            "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": merges}


# --- a tiny BPE trainer ------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's byte alphabet."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train(words, num_merges):
    """Greedy BPE on a Counter of words (tuples of symbols); ties go to the smaller pair."""
    words = {tuple(w): c for w, c in words.items()}
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[a, b] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = best[0] + best[1]
        new_words = {}
        for w, c in words.items():
            if best[0] in w:
                out, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                        out.append(merged)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                w = tuple(out)
            new_words[w] = new_words.get(w, 0) + c
        words = new_words
    return merges


def corpus():
    strings = json.loads((REPO_ROOT / "tests/golden/tokenizer/strings.json").read_text())["strings"]
    text = "\n".join(strings)
    for path in sorted(glob.glob("/usr/lib/python3.11/*.py"))[:12]:
        text += pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    return text[:200_000]


def byte_level_vocab(text, num_merges):
    alphabet = bytes_to_unicode()
    words = collections.Counter(
        "".join(alphabet[b] for b in w.encode()) for w in re.findall(r" ?\w+| ?[^\w\s]+|\s+", text))
    merges = train(collections.Counter({tuple(w): c for w, c in words.items()}), num_merges)
    vocab = {alphabet[b]: i for i, b in enumerate(sorted(alphabet, key=lambda b: alphabet[b]))}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, [f"{a} {b}" for a, b in merges]


def spm_vocab(text, num_merges, extra_tokens=()):
    """<unk> <s> </s>, extra tokens, the 256 byte tokens, frequent characters, merges."""
    spm_text = SPM + text.replace(" ", SPM)
    chars = collections.Counter(spm_text)
    known = sorted(c for c, n in chars.items() if c not in "\n")
    words = collections.Counter(re.findall(SPM + "?[^" + SPM + "]*", spm_text))
    words = collections.Counter({tuple(c for c in w if c in known): n for w, n in words.items()})
    merges = train(words, num_merges)
    vocab = {}
    for t in ["<unk>", "<s>", "</s>", *extra_tokens]:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for c in known:
        vocab.setdefault(c, len(vocab))
    return vocab, [f"{a} {b}" for a, b in merges]


# --- the families ------------------------------------------------------------------

def qwen25(text):
    vocab, merges = byte_level_vocab(text, 1500)
    n = len(vocab)
    names = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
             ("<|object_ref_start|>", True), ("<|vision_pad|>", True),
             ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False),
             ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|repo_name|>", False)]
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added(n + i, c, s) for i, (c, s) in enumerate(names)],
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                split(QWEN_PATTERN), byte_level(False, False, False)]},
            "post_processor": byte_level(False, False, False),
            "decoder": byte_level(False, False, False),
            "model": byte_model(vocab, merges)}


def deepseek_v3(text):
    vocab, merges = byte_level_vocab(text, 1500)
    specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
    # As in the real file, the three specials are also the model's first vocab entries.
    shifted = {c: i for i, c in enumerate(specials)}
    shifted.update({t: i + len(specials) for t, i in vocab.items()})
    tokens = [added(i, c, True, True) for i, c in enumerate(specials)]
    n = len(specials) + len(vocab)
    for i, (c, s) in enumerate([("<｜fim▁hole｜>", False), ("<｜fim▁begin｜>", False),
                                ("<｜User｜>", False), ("<｜Assistant｜>", False),
                                ("<think>", False), ("</think>", False),
                                ("<｜tool▁calls▁begin｜>", False)]):
        tokens.append(added(n + i, c, s, True))
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": tokens,
            "normalizer": {"type": "Sequence", "normalizers": []},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                *[split(p) for p in DEEPSEEK_PATTERNS], byte_level(False, True, False)]},
            "post_processor": bos_template(specials[0], 0),
            "decoder": byte_level(True, True, True),
            "model": byte_model(shifted, merges)}


def llama2(text):
    vocab, merges = spm_vocab(text, 1500)
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": SPM},
                {"type": "Replace", "pattern": {"String": " "}, "content": SPM}]},
            "pre_tokenizer": None,
            "post_processor": bos_template("<s>", 1),
            "decoder": SPM_DECODER,
            "model": spm_model(vocab, merges)}


def mistral_v03(text):
    controls = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                "[TOOL_RESULTS]", "[/TOOL_RESULTS]"] + [f"[control_{i}]" for i in range(8, 12)]
    vocab, merges = spm_vocab(text, 1500, controls)
    tokens = [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")]
    tokens += [added(3 + i, c) for i, c in enumerate(controls)]
    metaspace = {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "first",
                 "split": False}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": tokens,
            "normalizer": None, "pre_tokenizer": metaspace,
            "post_processor": bos_template("<s>", 1),
            "decoder": SPM_DECODER,
            "model": spm_model(vocab, merges)}


def mistral_metaspace_decoder(text):
    """Mistral v0.3 with the Metaspace decoder that other SentencePiece conversions use
    (e.g. transformers' converters with a Metaspace decoder): the one decoder the
    real families above do not show."""
    tokenizer = mistral_v03(text)
    tokenizer["decoder"] = {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "first",
                            "split": False}
    return tokenizer


FAMILIES = {"qwen2.5": qwen25, "deepseek-v3": deepseek_v3, "llama2": llama2,
            "mistral-v0.3": mistral_v03, "metaspace-decoder": mistral_metaspace_decoder}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default=str(REPO_ROOT / "tests/golden/tokenizer"))
    args = parser.parse_args()
    text = corpus()
    for name, build in FAMILIES.items():
        path = pathlib.Path(args.out_dir) / f"{name}-tokenizer.json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(build(text), f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
