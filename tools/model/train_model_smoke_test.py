#!/usr/bin/env python3
"""CI smoke test of train_model.py on Debian's CPU PyTorch: a few steps of a tiny model on
random tokens, then checks the exported checkpoint: every tensor transformers'
LlamaForCausalLM expects is there with its shape, values equal the trained weights in bf16,
and the loss went down from log(vocab)."""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return header, data


def main():
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        vocab = 300
        # A learnable stream: a repeating pattern, so a few steps must lower the loss.
        pattern = rng.integers(3, vocab, size=37).astype(np.uint16)
        np.tile(pattern, 400).tofile(os.path.join(d, "train.bin"))
        np.tile(pattern, 50).tofile(os.path.join(d, "valid.bin"))
        with open(os.path.join(d, "passkey.json"), "w") as f:
            json.dump({"needles": [[5, 6, 7, 8]], "answers": [[9, 10]], "question": [11, 12]}, f)
        tok = {"added_tokens": [{"id": 0, "content": "<|begin_of_text|>"}, {"id": 1, "content": "<|end_of_text|>"}],
               "model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(2, vocab)}}}
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump(tok, f)
        out = os.path.join(d, "model")
        subprocess.run([sys.executable, os.path.join(HERE, "train_model.py"), "--data", d, "--out", out,
                        "--smoke", "--device", "cpu", "--lr", "1e-2"], check=True)

        cfg = json.load(open(os.path.join(out, "config.json")))
        header, _ = read_safetensors(os.path.join(out, "model.safetensors"))
        h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
        want = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h], "lm_head.weight": [v, h]}
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            want.update({p + "input_layernorm.weight": [h], p + "post_attention_layernorm.weight": [h],
                         p + "self_attn.q_proj.weight": [q, h], p + "self_attn.k_proj.weight": [kv, h],
                         p + "self_attn.v_proj.weight": [kv, h], p + "self_attn.o_proj.weight": [h, q],
                         p + "mlp.gate_proj.weight": [i, h], p + "mlp.up_proj.weight": [i, h],
                         p + "mlp.down_proj.weight": [h, i]})
        got = {k: e["shape"] for k, e in header.items()}
        assert got == want, f"tensor names/shapes differ:\n{sorted(set(got.items()) ^ set(want.items()))}"
        assert all(e["dtype"] == "BF16" for e in header.values())
        assert v == vocab, (v, vocab)

        log = json.load(open(os.path.join(out, "training_log.json")))
        first, last = log["curve"][0]["loss"], log["curve"][-1]["loss"]
        assert math.isfinite(log["valid_loss"])
        assert first < math.log(vocab) + 1.0, first
        assert last < first, f"loss did not go down: {first} -> {last}"
        print(f"train_model smoke: ok (loss {first:.3f} -> {last:.3f}, valid {log['valid_loss']:.3f})")


if __name__ == "__main__":
    main()
