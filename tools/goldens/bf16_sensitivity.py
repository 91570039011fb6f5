#!/usr/bin/env python3
"""How far bf16 alone moves a tiny golden model's logits from transformers' float32 ones.

The CUDA backend keeps weights, activations and the KV cache in bf16, so its logits differ
from the float32 goldens (tests/golden/*.logits.safetensors) by rounding alone; how much
depends on the model (a large RoPE attention factor, for one, scales q.k and with it the
rounding of q and k). This script measures that share without a GPU: a plain float32
Llama forward (exact within 1e-5 of the goldens, which checks the transcription), then the
same forward with every weight rounded to bf16, then with the activations rounded to bf16
after every projection, the residual stream and the rotated q and k as well (the CUDA
backend's storage points). backends/cuda/cuda_decoder_test.cc sets its per-model
tolerances from these figures (docs/LOADING.md "GPU tolerances").

  python3 tools/goldens/bf16_sensitivity.py tiny-llama-longrope tiny-llama3 ...

Needs numpy and torch (Debian's python3-torch is enough). Rope types: default, llama3,
yarn, longrope (the formulas of tools/goldens/rope_reference.py).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import rope_reference as rr  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    kinds = {"F32": np.float32, "I64": np.int64, "I32": np.int32}
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + s:8 + n + e], dtype=kinds[v["dtype"]]).reshape(v["shape"])
    return out


def llama3_inv_freq(c, dim):
    s = c["rope_scaling"]
    inv = rr.default(c["rope_theta"], dim).astype(np.float64)
    lo_wl = s["original_max_position_embeddings"] / s["low_freq_factor"]
    hi_wl = s["original_max_position_embeddings"] / s["high_freq_factor"]
    wl = 2 * math.pi / inv
    scaled = np.where(wl > lo_wl, inv / s["factor"], inv)
    smooth = (s["original_max_position_embeddings"] / wl - s["low_freq_factor"]) / (
        s["high_freq_factor"] - s["low_freq_factor"])
    mid = (1 - smooth) * scaled / s["factor"] + smooth * scaled
    keep_mid = (wl >= hi_wl) & (wl <= lo_wl)
    return np.where(keep_mid, mid, scaled).astype(np.float32)


def rope(c, dim, seq_len):
    """(inv_freq, attention_factor) for a forward over seq_len tokens, as transformers."""
    s = c.get("rope_scaling") or {}
    kind = s.get("rope_type", s.get("type", "default"))
    base = c.get("rope_theta") or 10000.0
    if kind == "default":
        return rr.default(base, dim), 1.0
    if kind == "llama3":
        return llama3_inv_freq(c, dim), 1.0
    if kind == "yarn":
        inv, af, _ = rr.yarn(base, dim, s["factor"], s["original_max_position_embeddings"])
        return inv, af
    if kind == "longrope":
        orig = s["original_max_position_embeddings"]
        factor = c["max_position_embeddings"] / orig
        return rr.longrope(base, dim, s["short_factor"], s["long_factor"], orig, seq_len, factor)
    raise SystemExit(f"rope type {kind} is not transcribed here")


def forward(w, c, ids, bf16_weights, bf16_acts):
    """Logits [T, vocab] of a Llama (no biases, no q/k norm) in float32 with optional bf16
    rounding of the weights and of the activations at the CUDA backend's storage points."""
    def rw(t):
        return t.to(torch.bfloat16).float() if bf16_weights else t

    def ra(t):
        return t.to(torch.bfloat16).float() if bf16_acts else t

    W = {k: rw(torch.from_numpy(v.copy())) for k, v in w.items()}
    heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
    dim = c.get("head_dim") or c["hidden_size"] // heads
    eps = c["rms_norm_eps"]
    t = len(ids)
    inv, af = rope(c, dim, t)
    freqs = torch.outer(torch.arange(t, dtype=torch.float32), torch.from_numpy(np.asarray(inv, np.float32)))
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos() * af, emb.sin() * af

    def norm(x, g):
        return ra(g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)))

    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], -1)

    x = ra(W["model.embed_tokens.weight"][torch.tensor(ids)])
    mask = torch.ones(t, t, dtype=torch.bool).triu(1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, W[p + "input_layernorm.weight"])
        q = ra(h @ W[p + "self_attn.q_proj.weight"].T).view(t, heads, dim).transpose(0, 1)
        k = ra(h @ W[p + "self_attn.k_proj.weight"].T).view(t, kv, dim).transpose(0, 1)
        v = ra(h @ W[p + "self_attn.v_proj.weight"].T).view(t, kv, dim).transpose(0, 1)
        q, k = ra(q * cos + rot(q) * sin), ra(k * cos + rot(k) * sin)
        k, v = k.repeat_interleave(heads // kv, 0), v.repeat_interleave(heads // kv, 0)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dim)
        o = ra(s.masked_fill(mask, float("-inf")).softmax(-1) @ v)
        x = ra(x + ra(o.transpose(0, 1).reshape(t, -1) @ W[p + "self_attn.o_proj.weight"].T))
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        g = ra(h @ W[p + "mlp.gate_proj.weight"].T)
        u = ra(h @ W[p + "mlp.up_proj.weight"].T)
        x = ra(x + ra(ra(torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T))
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return norm(x, W["model.norm.weight"]) @ head.T


def main(names):
    print("| model | prompt tokens | float32 | bf16 weights | bf16 weights + activations |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        c = json.load(open(os.path.join(ROOT, "tests/golden/models", name, "config.json")))
        w = load_safetensors(os.path.join(ROOT, "tests/golden/models", name, "model.safetensors"))
        g = load_safetensors(os.path.join(ROOT, "tests/golden", name + ".logits.safetensors"))
        for p in sorted({k.split(".")[0] for k in g}):
            ids, pos, want = g[p + ".ids"].tolist(), g[p + ".positions"], torch.from_numpy(g[p + ".logits"].copy())
            worst = []
            for bw, ba in ((False, False), (True, False), (True, True)):
                got = forward(w, c, ids, bw, ba)[torch.from_numpy(pos.astype(np.int64))]
                err = (got - want).norm(dim=-1) / want.norm(dim=-1)
                worst.append(f"{err.max().item():.2e} (position {int(pos[err.argmax()])})")
            print(f"| {name} | {len(ids)} | " + " | ".join(worst) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny-llama3", "tiny-llama-yarn", "tiny-llama-longrope"])
