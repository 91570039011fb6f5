#!/usr/bin/env python3
"""Writes the golden file the C++ CNN is checked against (predictor/cnn_test.cc).

Random weights (fixed seed, scaled so that both ReLUs are partly active) and a few random
inputs of different shapes, some shaped like attention histories (non-negative, mostly
tiny, a few spikes), some plain normal. Outputs are computed by PyTorch in float64 from
the float32 weights and inputs. Tensors:
  conv1.weight ... conv3.bias      F32, the predictor.safetensors layout
  input.<i>                        F32 [rows, cols]
  output.<i>                       F64 [cols]
Usage: /usr/bin/python3 tools/predictor/make_cnn_golden.py --out predictor/testdata/cnn_golden.safetensors
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import predictor_model  # noqa: E402

SHAPES = [(64, 3), (64, 17), (64, 240), (5, 9), (1, 1), (2, 4)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    model = predictor_model.PredictorCNN()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    tensors = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    model64 = predictor_model.PredictorCNN().double()
    model64.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in tensors.items()})
    for i, (rows, cols) in enumerate(SHAPES):
        if i % 2 == 0:  # attention-like rows
            x = rng.exponential(0.01, size=(rows, cols))
            spikes = rng.random((rows, cols)) < 0.05
            x[spikes] = rng.random(spikes.sum())
        else:
            x = rng.normal(size=(rows, cols))
        x = x.astype(np.float32)
        with torch.no_grad():
            y = model64(torch.from_numpy(x.astype(np.float64))[None])[0].numpy()
        tensors[f"input.{i}"] = x
        tensors[f"output.{i}"] = y.astype(np.float64)
    predictor_model.save_safetensors(args.out, tensors, {"torch": torch.__version__,
                                                         "script": "tools/predictor/make_cnn_golden.py"})
    print(f"wrote {args.out}: {len(SHAPES)} cases")


if __name__ == "__main__":
    main()
