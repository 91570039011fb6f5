#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers for the runtime's logits tests.

Loads MODEL with transformers (AutoModelForCausalLM, float64, eager attention, on the CPU so
no TF32 or reduced-precision kernel is involved), refuses any missing or unexpected weight,
and writes OUT (safetensors):
  p{i}.ids        I64 [T]     the prompt token ids
  p{i}.positions  I64 [P]     the positions whose logits are stored
  p{i}.logits     F32 [P, V]  logits at those positions (full forward, causal)
The runtime checks prefill (all positions at once) and token-by-token decode against them.

Prompts: --random N:LEN,LEN,... draws ids uniformly with a fixed seed; --text FILE:LEN,...
takes the first LEN tokens of FILE's documents (jsonl from build_corpus.py, held-out
split) encoded with the model's tokenizer.json (BOS first). --last K stores only the last K
positions of prompts longer than K (keeps long-context goldens small).
"""
import argparse
import json
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--random", help="LEN,LEN,...: random-id prompts")
    ap.add_argument("--text", help="FILE:LEN,LEN,...: prompts from a jsonl corpus file")
    ap.add_argument("--last", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    model, info = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float64, attn_implementation="eager",
                                                       output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        sys.exit(f"make_logit_goldens: {args.model}: weights do not load cleanly: {bad}")
    model.eval()
    cfg = model.config
    print(f"make_logit_goldens: {args.model}: transformers {transformers.__version__}, "
          f"rope {getattr(cfg, 'rope_parameters', None) or getattr(cfg, 'rope_scaling', None)}", file=sys.stderr)

    prompts = []
    gen = torch.Generator().manual_seed(args.seed)
    if args.random:
        for n in map(int, args.random.split(",")):
            prompts.append(torch.randint(0, cfg.vocab_size, (n,), generator=gen))
    if args.text:
        from tokenizers import Tokenizer
        path, lens = args.text.split(":")
        tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
        docs = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
        docs.sort(key=len, reverse=True)  # the longest documents first: long prompts exist
        for i, n in enumerate(map(int, lens.split(","))):
            ids = tok.encode(docs[i]).ids[:n]
            assert len(ids) == n, f"document {i} has only {len(ids)} tokens"
            prompts.append(torch.tensor(ids))

    out = {}
    with torch.no_grad():
        for i, ids in enumerate(prompts):
            logits = model(ids[None].long()).logits[0]
            pos = torch.arange(len(ids))
            if args.last and len(ids) > args.last:
                pos = pos[-args.last:]
            out[f"p{i}.ids"] = ids.long().contiguous()
            out[f"p{i}.positions"] = pos.long().contiguous()
            out[f"p{i}.logits"] = logits[pos].float().contiguous()
            print(f"make_logit_goldens: prompt {i}: {len(ids)} tokens, {len(pos)} positions stored", file=sys.stderr)
    save_file(out, args.out, metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                                       "model": args.model, "dtype": "float64"})


if __name__ == "__main__":
    main()
