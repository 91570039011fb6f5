"""The attention predictor's CNN in PyTorch, and minimal safetensors I/O with numpy.

The module's parameter names are the tensor names of predictor.safetensors
(docs/ARCHITECTURE.md "Predictor weights"); the C++ implementation is predictor/cnn.cc.
Works with Debian's python3-torch 1.13 (CPU) and numpy; no other packages.
"""
import json
import struct

import numpy as np
import torch
from torch import nn


class PredictorCNN(nn.Module):
    """[batch, H rows (time, oldest first), N blocks] -> [batch, N] block scores."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv1d(32, 1, kernel_size=1)

    def forward(self, x):
        x = torch.relu(self.conv1(x.unsqueeze(1)))
        x = torch.relu(self.conv2(x))
        x = x.mean(dim=2)  # over time: [batch, 32, N]
        return self.conv3(x).squeeze(1)


_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
           "I32": np.int32}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def save_safetensors(path, tensors, metadata=None):
    """tensors: name -> numpy array (written little-endian, in name order)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(data[s:e], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def export_weights(model, path, metadata=None):
    tensors = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    save_safetensors(path, tensors, metadata)


def load_weights(path):
    model = PredictorCNN()
    state = {k: torch.from_numpy(np.array(v)) for k, v in load_safetensors(path).items()}
    model.load_state_dict(state)
    return model
