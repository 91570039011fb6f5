#!/usr/bin/env python3
"""Tokenizes the corpus splits for training: OUT/{train,valid}.bin (uint16 token ids,
each document as <|begin_of_text|> ids <|end_of_text|>) and OUT/passkey.json (token ids
of pass-key needles, the question and answers, for the synthetic retrieval rows).

The held-out split is not read. Needs Hugging Face `tokenizers` (the GPU machine).
"""
import argparse
import json
import os
import random
import sys

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import passkey  # noqa: E402


def encode_split(tok, path, bos, eos, limit_docs):
    docs = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit_docs and i >= limit_docs:
                break
            docs.append(json.loads(line)["text"])
    out = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        out.append(np.array([bos] + enc.ids + [eos], dtype=np.uint16))
    return np.concatenate(out), len(docs)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True, help="folder from build_corpus.py")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--passkeys", type=int, default=20000)
    ap.add_argument("--limit-docs", type=int, default=0, help="first N documents per split (smoke runs)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tok = Tokenizer.from_file(args.tokenizer)
    assert tok.get_vocab_size() <= 65536, "uint16 token files need a vocabulary under 65536"
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    for split in ("train", "valid"):
        ids, n = encode_split(tok, os.path.join(args.corpus, f"{split}.jsonl"), bos, eos, args.limit_docs)
        ids.tofile(os.path.join(args.out, f"{split}.bin"))
        print(f"prepare_data: {split}: {n} documents, {len(ids)} tokens", file=sys.stderr)

    rng = random.Random(1234)
    keys = [passkey.make_key(rng) for _ in range(args.passkeys)]
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    bank = {
        "needles": [enc(passkey.NEEDLE.format(key=k)) for k in keys],
        "answers": [enc(passkey.ANSWER.format(key=k)) for k in keys],
        "question": enc(passkey.QUESTION),
    }
    with open(os.path.join(args.out, "passkey.json"), "w") as f:
        json.dump(bank, f)
    print(f"prepare_data: {len(keys)} pass keys", file=sys.stderr)


if __name__ == "__main__":
    main()
