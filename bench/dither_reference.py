#!/usr/bin/python3
"""Breaks the 4-bit grid of a reference model whose linears were stored as
ggml Q4_1, so that quantizers can be compared on weights that are not already
on a grid.

SmolLM2-135M-Instruct reaches us only as a Q4_1 GGUF: each run of 32 weights
along a row is d*q + m with q in 0..15 (ggml's quantize_row_q4_1: m = the
block's minimum, d = (max - min) / 15, so q = 0 and q = 15 both occur). A
quantizer with a real-valued zero per group (DASH-Q, the K-quants) can land
on that grid exactly where its groups align with the blocks, which a bf16
model would not allow. This adds to each weight d * u, u uniform in
[-1/2, 1/2) (the spread the rounding removed), from a fixed seed, on every
linear (*_proj.weight) of an F32 Hugging Face folder written by
`dashq convert MODEL --format hf --type F32`; it checks every block is on a
Q4_1 grid first and refuses otherwise.

  bench/dither_reference.py IN_DIR OUT_DIR [SEED]
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

BLOCK = 32


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def dither(w, rng, name):
    b = w.reshape(-1, BLOCK)
    lo, hi = b.min(axis=1, keepdims=True), b.max(axis=1, keepdims=True)
    d = (hi - lo) / 15
    q = np.where(d > 0, (b - lo) / np.where(d > 0, d, 1), 0)
    off = np.abs(q - np.rint(q)).max()
    if off > 1e-3:  # not d*q + m on 16 levels: not a Q4_1 source
        sys.exit(f"{name}: a block is off the Q4_1 grid by {off:.3g} steps; refusing to dither")
    u = rng.random(b.shape, dtype=np.float32) - np.float32(0.5)
    return (b + d * u).reshape(w.shape), float(np.mean(d))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    rng = np.random.default_rng(seed)
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f != "model.safetensors":
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    path = os.path.join(src, "model.safetensors")
    n, header = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    tmp = os.path.join(dst, "model.safetensors.tmp")
    with open(path, "rb") as fi, open(tmp, "wb") as fo:
        fo.write(fi.read(8 + n))  # same header: same names, shapes, offsets
        done = 0
        for name in sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0]):
            t = header[name]
            a, b = t["data_offsets"]
            raw = np.asarray(data[a:b])
            if name.endswith("_proj.weight"):
                if t["dtype"] != "F32":
                    sys.exit(f"{path}: {name} is {t['dtype']}; convert with --type F32")
                w, step = dither(raw.view(np.float32), rng, name)
                raw = w.astype(np.float32).view(np.uint8)
                done += 1
            fo.seek(8 + n + a)
            fo.write(raw.tobytes())
    os.replace(tmp, os.path.join(dst, "model.safetensors"))
    print(f"{dst}: {done} linears dithered (seed {seed})")


if __name__ == "__main__":
    main()
