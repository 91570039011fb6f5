#!/usr/bin/env python3
"""Trains the bundled Llama-architecture model from scratch and exports it in Hugging Face
layout (config.json, model.safetensors in bf16, tokenizer.json, training_log.json).

Data: the uint16 token files of prepare_data.py (train.bin, valid.bin, passkey.json).
Rows are random 4096-token windows of the train stream; a small share (--passkey-rate) are
synthetic pass-key retrieval rows: a needle ("The pass key is 71432 ...") at a random depth
of train-split filler and the question at the end, so that retrieval over the whole
context is learnt and can be measured (docs/QUALITY.md).

  GPU run (tools/device/train_bundled_model.sh):  train_model.py --data D --out models/x --minutes 6
  CPU smoke test (CI):                            train_model.py --data D --out O --smoke
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_torch import LlamaForCausalLM, hf_config, save_safetensors  # noqa: E402

MODEL = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
             num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, rms_norm_eps=1e-5,
             rope_theta=100000.0, initializer_range=0.02)
SMOKE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-5,
             rope_theta=10000.0, initializer_range=0.02)


class Batches:
    def __init__(self, train, bank, ctx, batch, passkey_rate, seed):
        self.train, self.bank, self.ctx, self.batch, self.rate = train, bank, ctx, batch, passkey_rate
        self.rng = np.random.default_rng(seed)

    def passkey_row(self):
        i = int(self.rng.integers(len(self.bank["needles"])))
        needle, answer, q = self.bank["needles"][i], self.bank["answers"][i], self.bank["question"]
        n = self.ctx + 1 - len(needle) - len(q) - len(answer)
        s = int(self.rng.integers(0, len(self.train) - n))
        filler = self.train[s:s + n].astype(np.int64)
        depth = int(self.rng.integers(0, n + 1))
        return np.concatenate([filler[:depth], needle, filler[depth:], q, answer]).astype(np.int64)

    def next(self):
        starts = self.rng.integers(0, len(self.train) - self.ctx - 1, size=self.batch)
        rows = [self.train[s:s + self.ctx + 1].astype(np.int64) for s in starts]
        for b in range(self.batch):
            if self.rng.random() < self.rate:
                rows[b] = self.passkey_row()
        return torch.from_numpy(np.stack(rows))


def lm_loss(model, x):
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model, data, ctx, windows, device, autocast):
    """Mean loss over `windows` evenly spaced windows of the validation stream."""
    model.eval()
    starts = np.linspace(0, len(data) - ctx - 2, windows).astype(np.int64)
    losses = []
    for s in starts:
        x = torch.from_numpy(data[s:s + ctx + 1].astype(np.int64))[None].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            losses.append(lm_loss(model, x).item())
    model.train()
    return float(np.mean(losses))


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder from prepare_data.py")
    ap.add_argument("--tokenizer", help="tokenizer.json to ship with the model (default: DATA/tokenizer.json)")
    ap.add_argument("--out", required=True, help="model folder to write")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps (or use --minutes)")
    ap.add_argument("--minutes", type=float, default=0, help="derive --steps from measured speed to fit this time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--passkey-rate", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, few steps: the CI check that this script runs")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    autocast = device.type == "cuda"
    train = np.fromfile(os.path.join(args.data, "train.bin"), dtype=np.uint16)
    valid = np.fromfile(os.path.join(args.data, "valid.bin"), dtype=np.uint16)
    with open(os.path.join(args.data, "passkey.json")) as f:
        bank = json.load(f)
    tok_path = args.tokenizer or os.path.join(args.data, "tokenizer.json")
    with open(tok_path, encoding="utf-8") as f:
        tok = json.load(f)
    vocab = {t["content"]: t["id"] for t in tok["added_tokens"]}
    vocab_size = max(max(tok["model"]["vocab"].values()), max(vocab.values())) + 1
    bos, eos = vocab["<|begin_of_text|>"], vocab["<|end_of_text|>"]

    cfg = dict(SMOKE if args.smoke else MODEL, vocab_size=vocab_size)
    if args.smoke:
        args.ctx, args.batch, args.steps, args.warmup = cfg["max_position_embeddings"], 4, 3, 1
    if args.ctx > cfg["max_position_embeddings"]:
        sys.exit(f"train_model: --ctx {args.ctx} exceeds max_position_embeddings {cfg['max_position_embeddings']}")
    if not args.steps and not args.minutes:
        sys.exit("train_model: give --steps or --minutes")

    model = LlamaForCausalLM(cfg).to(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"train_model: {params / 1e6:.2f} M parameters, ctx {args.ctx}, batch {args.batch}, "
          f"{len(train) / 1e6:.1f} M train tokens, device {device}", file=sys.stderr)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    step_fn = torch.compile(model) if args.compile else model
    batches = Batches(train, bank, args.ctx, args.batch, args.passkey_rate, args.seed)

    log = {"config": cfg, "args": vars(args), "parameters": params, "curve": []}
    steps, t0, timed_from = args.steps, time.time(), None
    step = 0
    while steps == 0 or step < steps:
        lr = lr_at(step, steps or 10**9, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x = batches.next().to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = lm_loss(step_fn, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if steps == 0 and step == 5:
            if device.type == "cuda":
                torch.cuda.synchronize()
            timed_from = time.time()
        if steps == 0 and step == 25:  # fit the schedule to the time budget
            if device.type == "cuda":
                torch.cuda.synchronize()
            per_step = (time.time() - timed_from) / 20
            steps = max(step + 1, int((args.minutes * 60 - (time.time() - t0)) / per_step) + step)
            print(f"train_model: {per_step * 1000:.0f} ms/step -> {steps} steps for {args.minutes} min", file=sys.stderr)
        if step % 100 == 0 or step == steps or args.smoke:
            entry = {"step": step, "lr": lr, "loss": loss.item(), "seconds": time.time() - t0}
            if step % 500 == 0 or step == steps:
                entry["valid_loss"] = evaluate(model, valid, args.ctx, 4 if args.smoke else 8, device, autocast)
            log["curve"].append(entry)
            print("train_model: " + " ".join(f"{k} {v:.4g}" for k, v in entry.items()), file=sys.stderr, flush=True)
    train_seconds = time.time() - t0

    # The shipped weights are bf16; measure them as the runtime runs them (fp32 arithmetic).
    shipped = copy.deepcopy(model).to(torch.bfloat16).float()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    vloss = evaluate(shipped, valid, args.ctx, 4 if args.smoke else 48, device, autocast=False)
    log.update(steps=steps, train_seconds=train_seconds, tokens_seen=steps * args.batch * args.ctx,
               valid_loss=vloss, valid_perplexity=math.exp(vloss),
               device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__)
    print(f"train_model: {steps} steps in {train_seconds:.0f} s; valid loss {vloss:.4f}, perplexity {math.exp(vloss):.2f}",
          file=sys.stderr)

    os.makedirs(args.out, exist_ok=True)
    save_safetensors({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()},
                     os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(hf_config(cfg, bos, eos), f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}, f, indent=2)
    shutil.copy(tok_path, os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "training_log.json"), "w") as f:
        json.dump(log, f, indent=1)


if __name__ == "__main__":
    main()
