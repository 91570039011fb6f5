"""Reads the predictor training traces written by the runtime's recorder
(predictor/recorder.h has the format) into numpy arrays.

Each track becomes a dict with
  prompt_len, layer, kv_head, sequence
  rows:   float16 [R + T, W]  prefill rows, then the history input row of each decode step
          (the recorded policy's row, or the full-attention row), zero-padded to W columns
  target: float16 [T, W]      block max-pooled full attention of each decode step
  mass:   float16 [T, W]      block attention mass (mean over the KV head's query heads),
          or None when the trace has no mass rows
  R = number of prefill rows, W = ceil((prompt_len + T) / block).
Zero padding reproduces the history's rule that a row gains zero columns as the context
grows, so the history before decode step t is rows[R + t - H : R + t, :ceil((P + t) / B)].
"""
import struct

import numpy as np

MAGIC = b"APRTRC01"
TRACK_MAGIC = 0x4B435254


def _width(tokens, block):
    return (tokens + block - 1) // block


def read_traces(path):
    """Returns (header dict, list of track dicts)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != MAGIC:
        raise ValueError(f"{path}: not a trace file")
    block, history, layers, kv_heads = struct.unpack_from("<4I", data, 8)
    header = {"block": block, "history": history, "num_layers": layers, "num_kv_heads": kv_heads}
    pos, tracks = 24, []
    while pos < len(data):
        magic, seq, layer, kvh, plen, nprefill, steps, flags = struct.unpack_from("<8I", data, pos)
        if magic != TRACK_MAGIC:
            raise ValueError(f"{path}: bad track magic at byte {pos}")
        pos += 32
        total_w = _width(plen + steps, block)

        def take(widths):
            nonlocal pos
            out = np.zeros((len(widths), total_w), dtype=np.float16)
            for i, w in enumerate(widths):
                out[i, :w] = np.frombuffer(data, dtype="<f2", count=w, offset=pos)
                pos += 2 * w
            return out

        prefill = take([_width(plen, block)] * nprefill)
        step_widths = [_width(plen + i + 1, block) for i in range(steps)]
        target = take(step_widths)
        inputs = take(step_widths) if flags & 1 else target
        mass = take(step_widths) if flags & 2 else None
        tracks.append({"sequence": seq, "layer": layer, "kv_head": kvh, "prompt_len": plen,
                       "prefill_rows": nprefill, "rows": np.concatenate([prefill, inputs]),
                       "target": target, "mass": mass})
    return header, tracks
