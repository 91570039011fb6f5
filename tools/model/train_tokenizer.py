#!/usr/bin/env python3
"""Trains the bundled model's byte-level BPE tokenizer with Hugging Face `tokenizers`.

Llama-3 style: the Llama-3 split regex (numbers in groups of at most 3 digits), byte-level
alphabet, `ignore_merges`, a BOS added by the post-processor. Trained on the train split
only. `--style gpt2` makes a GPT-2 style one (ByteLevel's own regex, no BOS); the tests use
it to cover the second pre-tokenizer family.

Runs where `tokenizers` is installed (the GPU machine): see tools/device/train_bundled_model.sh.
"""
import argparse
import json
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]


def texts(path, limit_chars):
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            yield text
            total += len(text)
            if limit_chars and total >= limit_chars:
                return


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="train.jsonl from build_corpus.py")
    ap.add_argument("--out", required=True, help="tokenizer.json to write")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--style", choices=["llama3", "gpt2"], default="llama3")
    ap.add_argument("--limit-chars", type=int, default=0, help="train on the first N characters only")
    args = ap.parse_args()

    if args.style == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts(args.train, args.limit_chars), trainer)
    if args.style == "llama3":
        bos = tok.token_to_id(SPECIALS[0])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A {SPECIALS[0]} $B", special_tokens=[(SPECIALS[0], bos)])
    tok.save(args.out)
    print(f"train_tokenizer: {args.style} vocab {tok.get_vocab_size()} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
