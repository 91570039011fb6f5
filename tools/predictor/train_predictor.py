#!/usr/bin/env python3
"""Trains the attention predictor's CNN on traces recorded by //predictor/eval:record and
exports predictor.safetensors (docs/PREDICTOR.md, "Training").

A sample is (the H = 64 history rows before a decode step, that step's true attention),
both cut to the candidate blocks [sink / B, N - local / B) exactly as the runtime cuts the
CNN's input (N = ceil(tokens before the step / B)).

Target and loss (--loss):
  ce   (default) soft cross-entropy between softmax(scores) and the step's block attention
       mass normalised over the candidates (--target mass: what recall counts) or the
       block max-pooled row (--target max: what the history stores);
  mse  mean squared error between scores and (target x number of candidates).
Training uses random crops of --crop candidate columns (plus the 2-column receptive field
of the two 3x3 convolutions; a column is in the loss only when its receptive field lies in
the crop or at the true boundary of the candidate region, so every loss column sees exactly
what inference sees). Validation runs the CNN over whole candidate rows and reports the
share of the best achievable candidate mass the top-k blocks capture (k = 8 and 24: the
1/16 and 1/8 budgets at 4K), next to two history heuristics (last row, mean of rows).

CPU only, Debian's python3-torch 1.13:
  /usr/bin/python3 tools/predictor/train_predictor.py --train /tmp/traces/train.trace \
      --valid /tmp/traces/valid.trace --out models/apr-tiny/predictor.safetensors
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import predictor_model  # noqa: E402
import trace_io  # noqa: E402

SINK, LOCAL = 64, 64


def ceil_div(a, b):
    return (a + b - 1) // b


class Samples:
    """Every (track, step) of some trace files."""

    def __init__(self, paths, target, stride=1):
        self.tracks, self.index = [], []
        for p in paths:
            header, tracks = trace_io.read_traces(p)
            self.block, self.history = header["block"], header["history"]
            for tr in tracks:
                tgt = tr["mass"] if target == "mass" else tr["target"]
                if tgt is None:
                    raise SystemExit(f"{p}: no mass rows; use --target max")
                tr["y"] = tgt
                ti = len(self.tracks)
                self.tracks.append(tr)
                for t in range(0, len(tr["target"]), stride):
                    self.index.append((ti, t))
        self.cb = SINK // self.block

    def window(self, ti, t):
        """(history [H, n], target [n], mass-or-target full row) over the candidates."""
        tr = self.tracks[ti]
        r, h, b = tr["prefill_rows"], self.history, self.block
        n_hist = ceil_div(tr["prompt_len"] + t, b)
        ce = n_hist - LOCAL // b
        lo = r + t - h
        rows = tr["rows"][max(lo, 0):r + t, self.cb:ce].astype(np.float32)
        if lo < 0:
            rows = np.concatenate([np.zeros((-lo, rows.shape[1]), np.float32), rows])
        return rows, tr["y"][t, self.cb:ce].astype(np.float32), tr


def crop_batch(samples, picks, crop, rng):
    """Inputs [batch, H, crop + 4], targets and loss masks [batch, crop + 4]."""
    width = crop + 4
    xs, ys, ms = [], [], []
    for ti, t in picks:
        x, y, _ = samples.window(ti, t)
        n = x.shape[1]
        if n < width:  # too narrow to crop: pad on the right, mask the padding out
            pad = width - n
            x = np.pad(x, ((0, 0), (0, pad)))
            y = np.pad(y, (0, pad))
            m = np.zeros(width, np.float32)
            # Column n - 1 would see conv1 outputs of the padding (relu(bias), where the
            # runtime's conv2 sees zeros): leave it out of the loss.
            m[:n - 1] = 1
        else:
            s = int(rng.integers(0, n - width + 1))
            x, y = x[:, s:s + width], y[s:s + width]
            c = np.arange(s, s + width)
            m = ((np.maximum(c - 2, 0) >= s) & (np.minimum(c + 2, n - 1) <= s + width - 1))
            m = m.astype(np.float32)
        xs.append(x), ys.append(y), ms.append(m)
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
            torch.from_numpy(np.stack(ms)))


def loss_fn(kind, scores, y, m):
    if kind == "ce":
        neg = torch.finfo(scores.dtype).min
        logp = F.log_softmax(scores.masked_fill(m == 0, neg), dim=-1)
        q = y * m
        q = q / q.sum(-1, keepdim=True).clamp_min(1e-12)
        return -(q * logp.masked_fill(m == 0, 0)).sum(-1).mean()
    n = m.sum(-1, keepdim=True)
    return (((scores - y * n) ** 2) * m).sum() / m.sum()


@torch.no_grad()
def validate(model, samples, picks, ks=(8, 24)):
    """Share of the oracle's top-k candidate mass captured by each scorer."""
    res = {f"{name}@{k}": [] for name in ("cnn", "last", "mean") for k in ks}
    for ti, t in picks:
        x, y, tr = samples.window(ti, t)
        mass = tr["mass"][t].astype(np.float32) if tr["mass"] is not None else None
        m = mass[samples.cb:samples.cb + x.shape[1]] if mass is not None else y
        scores = {
            "cnn": model(torch.from_numpy(x)[None])[0].numpy(),
            "last": x[-1],
            "mean": x.mean(0),
        }
        for k in ks:
            if x.shape[1] <= k:
                continue
            best = np.sort(m)[::-1][:k].sum()
            for name, s in scores.items():
                top = np.lexsort((np.arange(len(s)), -s))[:k]  # ties to the lower block
                res[f"{name}@{k}"].append(m[top].sum() / max(best, 1e-12))
    return {k: float(np.mean(v)) for k, v in res.items() if v}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--valid", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", choices=("mass", "max"), default="mass")
    ap.add_argument("--loss", choices=("ce", "mse"), default="ce")
    ap.add_argument("--crop", type=int, default=48)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--valid-samples", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--init", default="", help="start from these weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", default="", help="write the training log (JSON) here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    t0 = time.time()
    train = Samples(args.train, args.target)
    valid = Samples(args.valid, args.target)
    print(f"train: {len(train.tracks)} tracks, {len(train.index)} samples; valid: "
          f"{len(valid.tracks)} tracks, {len(valid.index)} samples ({time.time() - t0:.0f} s)", flush=True)
    vpick = [valid.index[i] for i in rng.choice(len(valid.index), min(args.valid_samples, len(valid.index)), replace=False)]

    model = predictor_model.load_weights(args.init) if args.init else predictor_model.PredictorCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    log = {"args": vars(args), "evals": []}
    best, best_state = -1.0, None
    v = validate(model, valid, vpick)
    print(f"step 0: valid {json.dumps(v)}", flush=True)
    log["evals"].append({"step": 0, **v})
    run_loss, start = 0.0, time.time()
    for step in range(1, args.steps + 1):
        picks = [train.index[i] for i in rng.integers(0, len(train.index), args.batch)]
        x, y, m = crop_batch(train, picks, args.crop, rng)
        loss = loss_fn(args.loss, model(x), y, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item()
        if step % 50 == 0:
            print(f"step {step}: loss {run_loss / 50:.5f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{time.time() - start:.0f} s", flush=True)
            run_loss = 0.0
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            v = validate(model, valid, vpick)
            model.train()
            print(f"step {step}: valid {json.dumps(v)}", flush=True)
            log["evals"].append({"step": step, **v})
            if v["cnn@8"] > best:
                best = v["cnn@8"]
                best_state = {k: t.clone() for k, t in model.state_dict().items()}
    model.load_state_dict(best_state)
    predictor_model.export_weights(model, args.out, {
        "format": "pt", "trained_by": "tools/predictor/train_predictor.py",
        "target": args.target, "loss": args.loss, "steps": str(args.steps),
        "valid_cnn@8": f"{best:.4f}"})
    log["best_valid_cnn@8"] = best
    log["seconds"] = time.time() - t0
    if args.log:
        with open(args.log, "w") as f:
            json.dump(log, f, indent=1)
    print(f"wrote {args.out} (best valid cnn@8 {best:.4f}, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
