#!/usr/bin/env python3
"""Runs the official DASH-Q loader's own code (github.com/JaeminK/dashq,
src/dashq/quantization.py: PackedQuantizedLinear, its unpacking and its
dequantization) on a packed checkpoint written by dashq, and compares what it
rebuilds with the weights dashq evaluates (a safetensors file written by
tests/tools/dump_weights from the same checkpoint).

    official_loader_check.py CHECKPOINT_DIR DASHQ_WEIGHTS.safetensors

The loader is not part of this repository: $DASHQ_OFFICIAL_LOADER names a
copy of it (the folder holding src/dashq/quantization.py). Needs torch (any
version with torch.bitwise_right_shift; Debian's python3-torch 1.13 works).
Only quantization.py is imported: loader.py pulls in transformers >= 5.8 and
accelerate, which need a newer torch than Debian ships. The checkpoint's
tensors are read with a few lines of safetensors parsing instead of
accelerate's loader; the checks that loader.py makes on the file (format,
quantized_modules, lm_head.weight present) are repeated here, as is what the
official dashq-info prints (base_model, method at the top level).

Exit status: 0 all checks pass, 1 a check failed, 77 loader or torch missing.
Prints one line per checkpoint: modules, bit-exact count, max |difference|
with float32 and with the loader's default bfloat16.
"""
import importlib.util
import json
import os
import struct
import sys


def skip(msg):
    print(f"skipped: {msg}")
    sys.exit(77)


LOADER = os.environ.get("DASHQ_OFFICIAL_LOADER")
if not LOADER:
    skip("DASHQ_OFFICIAL_LOADER is not set (a copy of github.com/JaeminK/dashq)")
QPY = os.path.join(LOADER, "src", "dashq", "quantization.py")
if not os.path.exists(QPY):
    skip(f"{QPY} does not exist")
try:
    import torch
except ImportError:
    skip("torch is not installed")

spec = importlib.util.spec_from_file_location("dashq_official_quantization", QPY)
official = importlib.util.module_from_spec(spec)
spec.loader.exec_module(official)

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        buf = bytearray(data[base + a:base + b])
        out[name] = (t["dtype"], t["shape"], torch.frombuffer(buf, dtype=DTYPES[t["dtype"]]).reshape(t["shape"]) if b > a
                     else torch.empty(t["shape"], dtype=DTYPES[t["dtype"]]))
    return out


def main():
    ckpt, ours_path = sys.argv[1], sys.argv[2]
    with open(os.path.join(ckpt, "dashq_config.json")) as f:
        cfg = json.load(f)
    failures = []
    if cfg.get("format") != "dashq-packed-linear":  # loader.py _load_dashq_config
        failures.append(f"format {cfg.get('format')!r}")
    for key in ("base_model", "method", "model_class"):  # what dashq-info prints
        if cfg.get(key) is None:
            failures.append(f"dashq_config.json has no top-level {key}")
    tensors = read_safetensors(os.path.join(ckpt, "model.safetensors"))
    ours = read_safetensors(ours_path)
    mods = cfg["quantized_modules"]
    if "lm_head.weight" not in tensors and "lm_head" not in mods:
        failures.append("no lm_head.weight (the loader leaves a tied head unloaded)")
    exact = padded = 0
    worst32 = worst_bf16 = 0.0
    forward_fail = 0
    for name, meta in mods.items():
        # exactly as loader.py _replace_quantized_modules builds the module
        mod = official.PackedQuantizedLinear(
            in_features=int(meta["in_features"]), out_features=int(meta["out_features"]),
            quant_in_features=int(meta.get("quant_in_features", meta["in_features"])),
            nbits=int(meta["nbits"]), group_size=int(meta["group_size"]), num_groups=int(meta["num_groups"]),
            has_bias=f"{name}.bias" in tensors, linear_dtype=torch.float32, scale_zero_dtype=torch.float16)
        state = {k: tensors[f"{name}.{k}"][2] for k in ("W_q_packed", "scale", "zero")}
        for k, v in state.items():  # the buffers' registered shapes and dtypes are the file's
            buf = getattr(mod, k)
            if tuple(buf.shape) != tuple(v.shape) or buf.dtype != v.dtype:
                failures.append(f"{name}.{k}: file {v.dtype} {list(v.shape)}, loader expects {buf.dtype} {list(buf.shape)}")
        if f"{name}.bias" in tensors:
            state["bias"] = tensors[f"{name}.bias"][2].float()
        mod.load_state_dict(state, strict=True)
        w32 = mod.dequantize_weight(torch.float32)  # [out, quant_in_features]
        in_f = int(meta["in_features"])
        if w32.shape[1] != in_f:
            padded += 1
            try:  # the loader's own forward on an input of in_features
                mod(torch.zeros(1, in_f))
            except RuntimeError:
                forward_fail += 1
        ref = ours[f"{name}.weight"][2]
        got = w32[:, :in_f]
        if tuple(got.shape) != tuple(ref.shape):
            failures.append(f"{name}: shape {list(got.shape)} vs ours {list(ref.shape)}")
            continue
        d = (got - ref).abs().max().item()
        worst32 = max(worst32, d)
        exact += bool(torch.equal(got, ref))
        # the loader's default: load_quantized(dtype=torch.bfloat16) casts scale/zero buffers to bf16
        sb, zb = mod.scale.to(torch.bfloat16), mod.zero.to(torch.bfloat16)
        q = official._unpack_int_values(mod.W_q_packed, mod.nbits, mod.numel).view(mod.num_groups, mod.group_size)
        wb = ((q.to(torch.bfloat16) - zb) * sb).view(mod.out_features, mod.quant_in_features)[:, :in_f]
        worst_bf16 = max(worst_bf16, (wb.float() - ref).abs().max().item())
    if exact != len(mods):
        failures.append(f"only {exact} of {len(mods)} modules bit-exact (max |diff| {worst32:g})")
    head = "lm_head.weight"
    if head in tensors and head not in mods:
        if not torch.equal(tensors[head][2].float(), ours[head][2]):
            failures.append("lm_head.weight differs from the head dashq evaluates")
    print(f"{ckpt}: {len(mods)} modules, {exact} bit-exact in float32 (max |diff| {worst32:g}), "
          f"bfloat16 max |diff| {worst_bf16:g}; {padded} padded, the loader's forward fails on {forward_fail} of them; "
          f"lm_head.weight {'present' if head in tensors else 'quantized' if 'lm_head' in mods else 'MISSING'}")
    for f in failures:
        print(f"  FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
