#!/usr/bin/env python3
"""Independent numpy float32 transcription of transformers' RoPE initialisers
(modeling_rope_utils.py: _compute_yarn_parameters, _compute_longrope_parameters,
_compute_dynamic_ntk_parameters, transformers 5) for the hand-checked cases of
runtime/rope_test.cc. Needs numpy only; prints each case's inverse frequencies and
attention factor:  python3 tools/goldens/rope_reference.py
"""
import math, numpy as np
f32=np.float32
def default(base, dim):
    ex = (np.arange(0, dim, 2).astype(f32) / f32(dim)).astype(f32)
    return (f32(1) / np.power(f32(base), ex)).astype(f32)
def yarn(base, dim, factor, orig, beta_fast=32, beta_slow=1, truncate=True, mscale=None, mscale_all_dim=None, af=None):
    pos = np.power(f32(base), (np.arange(0, dim, 2).astype(f32) / f32(dim))).astype(f32)
    ext = f32(1)/pos; inter = f32(1)/(f32(factor)*pos)
    cd = lambda r: (dim*math.log(orig/(r*2*math.pi)))/(2*math.log(base))
    lo, hi = cd(beta_fast), cd(beta_slow)
    if truncate: lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo,0), min(hi, dim-1)
    if lo == hi: hi += 0.001
    ramp = np.clip((np.arange(dim//2).astype(f32) - f32(lo)) / f32(hi-lo), 0, 1).astype(f32)
    ef = (f32(1) - ramp).astype(f32)
    inv = (inter*(f32(1)-ef) + ext*ef).astype(f32)
    gm = lambda s, m=1: 1.0 if s <= 1 else 0.1*m*math.log(s)+1.0
    if af is None:
        af = gm(factor, mscale)/gm(factor, mscale_all_dim) if (mscale and mscale_all_dim) else gm(factor)
    return inv, af, (lo, hi)
def longrope(base, dim, short, long, orig, seq, factor):
    ext = np.array(long if seq > orig else short, dtype=f32)
    shape = (np.arange(0, dim, 2).astype(f32)/f32(dim)).astype(f32)
    inv = (f32(1)/(ext*np.power(f32(base), shape))).astype(f32)
    af = 1.0 if factor <= 1 else math.sqrt(1+math.log(factor)/math.log(orig))
    return inv, af
def dynamic(base, dim, factor, maxp, seq):
    seq = max(seq, maxp)
    b = base*((factor*seq/maxp)-(factor-1))**(dim/(dim-2))
    return default(b, dim)
if __name__ == "__main__":
    np.set_printoptions(precision=10)
    print("yarn16", *yarn(10000, 16, 4.0, 256))
    print("yarn16 mscale notrunc", *yarn(10000, 16, 4.0, 256, beta_fast=16, beta_slow=2, truncate=False, mscale=0.707, mscale_all_dim=1.0))
    print("long short", *longrope(10000, 8, [1,1.5,2,4],[2,4,8,16], 64, 64, 8.0))
    print("long long", *longrope(10000, 8, [1,1.5,2,4],[2,4,8,16], 64, 65, 8.0))
    print("dyn50", dynamic(10000, 8, 2.0, 100, 50))
    print("dyn200", dynamic(10000, 8, 2.0, 100, 200))
