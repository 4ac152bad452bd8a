#!/usr/bin/env python3
"""Runs the official DASH-Q loader's own code (github.com/JaeminK/dashq) on a
packed checkpoint written by dashq, and compares what it rebuilds with the
weights dashq evaluates (a safetensors file written by tests/tools/dump_weights
from the same checkpoint).

    official_loader_check.py CHECKPOINT_DIR DASHQ_WEIGHTS.safetensors

The loader is not part of this repository: $DASHQ_OFFICIAL_LOADER names a
copy of it (the folder holding src/dashq). Needs torch with
torch.bitwise_right_shift (Debian's python3-torch 1.13 works). The loader's
loader.py imports transformers >= 5.8, accelerate, huggingface_hub and
safetensors at the top; transformers 5 needs a newer torch than Debian ships
and PyPI's Linux torch wheels bring ~3 GB of CUDA libraries, so those four
are replaced by stubs here (safe_open reads the file with a few lines of
parsing). A sharded checkpoint (model.safetensors.index.json) is read
shard by shard. What runs is the loader's own: _load_dashq_config (format check),
_checkpoint_keys, _replace_quantized_modules (every module built from
dashq_config.json exactly as load_quantized builds it, on a skeleton with
the Llama module names instead of transformers' model), the buffers loaded
from the file (shapes and dtypes must match those it registers), and
PackedQuantizedLinear's unpacking and dequantization. Every parameter and
buffer of the skeleton must come from the file (lm_head.weight too), and
dashq-info's fields (base_model, method) must be at the top level.

Exit status: 0 all checks pass, 1 a check failed, 77 loader or torch missing.
Prints one line per checkpoint: modules, bit-exact count, max |difference|
with float32 (load_quantized(dtype=torch.float32)) and with the loader's
default bfloat16.
"""
import json
import os
import struct
import sys
import types
from pathlib import Path


def skip(msg):
    print(f"skipped: {msg}")
    sys.exit(77)


LOADER = os.environ.get("DASHQ_OFFICIAL_LOADER")
if not LOADER:
    skip("DASHQ_OFFICIAL_LOADER is not set (a copy of github.com/JaeminK/dashq)")
SRC = os.path.join(LOADER, "src")
if not os.path.exists(os.path.join(SRC, "dashq", "loader.py")):
    skip(f"{SRC}/dashq/loader.py does not exist")
try:
    import torch
except ImportError:
    skip("torch is not installed")
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


def read_checkpoint(ckpt):
    """Every tensor of a checkpoint: model.safetensors, or the shards that
    model.safetensors.index.json lists (each tensor in the file it names)."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(ckpt, "model.safetensors"))
    with open(index) as fh:
        weight_map = json.load(fh)["weight_map"]
    tensors = {}
    for file in sorted(set(weight_map.values())):
        for name, t in read_safetensors(os.path.join(ckpt, file)).items():
            if weight_map.get(name) != file:
                raise SystemExit(f"{ckpt}: FAIL: {name} is in {file}, the index says {weight_map.get(name)}")
            tensors[name] = t
    missing = set(weight_map) - set(tensors)
    if missing:
        raise SystemExit(f"{ckpt}: FAIL: the index lists {len(missing)} tensors no shard holds")
    return tensors


def stub_third_party():
    """Stand-ins for the names loader.py imports from transformers,
    accelerate, huggingface_hub and safetensors (none is called here except
    safe_open, which _checkpoint_keys uses)."""
    def unavailable(*a, **k):
        raise RuntimeError("not available in this check")

    class SafeOpen:
        def __init__(self, path, framework="pt", device="cpu"):
            self.t = read_safetensors(path)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def keys(self):
            return list(self.t)

    stubs = {
        "accelerate": {"init_empty_weights": unavailable, "load_checkpoint_and_dispatch": unavailable},
        "huggingface_hub": {"snapshot_download": unavailable},
        "safetensors": {"safe_open": SafeOpen},
        "transformers": {n: unavailable for n in ("AutoConfig", "AutoModelForCausalLM", "AutoModelForImageTextToText",
                                                  "AutoTokenizer")},
    }
    for name, attrs in stubs.items():
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        sys.modules[name] = mod


def skeleton(hf_config, tensors):
    """The module tree of a Hugging Face Llama/Qwen2 model (names only)."""
    nn = torch.nn
    d, f, L = hf_config["hidden_size"], hf_config["intermediate_size"], hf_config["num_hidden_layers"]
    hd = hf_config.get("head_dim") or d // hf_config["num_attention_heads"]
    qd, kvd = hf_config["num_attention_heads"] * hd, hf_config["num_key_value_heads"] * hd
    V = hf_config["vocab_size"]

    def lin(i, o, name):
        return nn.Linear(i, o, bias=f"{name}.bias" in tensors)

    class Block(nn.Module):
        def __init__(self, l):
            super().__init__()
            p = f"model.layers.{l}."
            self.input_layernorm, self.post_attention_layernorm = nn.Module(), nn.Module()
            self.input_layernorm.weight = nn.Parameter(torch.empty(d))
            self.post_attention_layernorm.weight = nn.Parameter(torch.empty(d))
            self.self_attn, self.mlp = nn.Module(), nn.Module()
            for n, i, o in (("q_proj", d, qd), ("k_proj", d, kvd), ("v_proj", d, kvd), ("o_proj", qd, d)):
                setattr(self.self_attn, n, lin(i, o, p + "self_attn." + n))
            for n, i, o in (("gate_proj", d, f), ("up_proj", d, f), ("down_proj", f, d)):
                setattr(self.mlp, n, lin(i, o, p + "mlp." + n))

    root = nn.Module()
    root.model = nn.Module()
    root.model.embed_tokens = nn.Embedding(V, d)
    root.model.layers = nn.ModuleList([Block(l) for l in range(L)])
    root.model.norm = nn.Module()
    root.model.norm.weight = nn.Parameter(torch.empty(d))
    root.lm_head = nn.Linear(d, V, bias=False)
    return root


def main():
    ckpt, ours_path = sys.argv[1], sys.argv[2]
    stub_third_party()
    sys.path.insert(0, SRC)
    from dashq import loader as official_loader  # the loader's package, from $DASHQ_OFFICIAL_LOADER
    from dashq import quantization as official

    failures = []
    try:
        cfg = official_loader._load_dashq_config(Path(ckpt))
    except (ValueError, FileNotFoundError) as e:
        print(f"{ckpt}: FAIL: {e}")
        return 1
    for key in ("base_model", "method", "model_class"):  # what dashq-info prints
        if cfg.get(key) is None:
            failures.append(f"dashq_config.json has no top-level {key}")
    keys = official_loader._checkpoint_keys(Path(ckpt))
    tensors = read_checkpoint(ckpt)
    ours = read_safetensors(ours_path)
    with open(os.path.join(ckpt, "config.json")) as fh:
        hf_config = json.load(fh)
    model = skeleton(hf_config, keys)
    mods = cfg["quantized_modules"]
    if official_loader._replace_quantized_modules(model, mods, keys) != len(mods):
        failures.append("not every quantized module was replaced")
    # the load, as load_checkpoint_and_dispatch(dtype=float32) does it: every
    # entry of the model from the file, in its registered shape
    state = model.state_dict()
    for name, ref in state.items():
        if name not in tensors:
            failures.append(f"{name} is not in the file (the loader would leave it unloaded)")
            continue
        t = tensors[name][2]
        if tuple(t.shape) != tuple(ref.shape):
            failures.append(f"{name}: file {list(t.shape)}, loader expects {list(ref.shape)}")
        elif ref.dtype == torch.int32 and t.dtype != torch.int32:
            failures.append(f"{name}: file {t.dtype}, loader expects int32")
    if failures:
        for f in failures:
            print(f"  FAIL: {f}")
        return 1
    model.load_state_dict({k: (tensors[k][2] if v.dtype == torch.int32 else tensors[k][2].to(torch.float32))
                           for k, v in state.items()}, strict=True)
    exact = padded = forward_fail = 0
    worst32 = worst_bf16 = 0.0
    for name in mods:
        mod = model.get_submodule(name)
        assert isinstance(mod, official.PackedQuantizedLinear)
        w32 = mod.dequantize_weight(torch.float32)  # [out, quant_in_features]
        in_f = mod.in_features
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
        worst32 = max(worst32, (got - ref).abs().max().item())
        exact += bool(torch.equal(got, ref))
        # load_quantized's default dtype=torch.bfloat16: scale and zero are cast
        # to bf16 on load and the weight is rebuilt in the activations' bf16
        sb, zb = mod.scale.to(torch.bfloat16), mod.zero.to(torch.bfloat16)
        q = official._unpack_int_values(mod.W_q_packed, mod.nbits, mod.numel).view(mod.num_groups, mod.group_size)
        wb = ((q.to(torch.bfloat16) - zb) * sb).view(mod.out_features, mod.quant_in_features)[:, :in_f]
        worst_bf16 = max(worst_bf16, (wb.float() - ref).abs().max().item())
    if exact != len(mods):
        failures.append(f"only {exact} of {len(mods)} modules bit-exact (max |diff| {worst32:g})")
    head = "lm_head.weight"
    if "lm_head" not in mods and not torch.equal(model.lm_head.weight, ours[head][2]):
        failures.append("lm_head.weight differs from the head dashq evaluates")
    print(f"{ckpt}: {len(mods)} modules, {exact} bit-exact in float32 (max |diff| {worst32:g}), "
          f"bfloat16 max |diff| {worst_bf16:g}; {padded} padded, the loader's forward fails on {forward_fail} of them; "
          f"lm_head {'quantized' if 'lm_head' in mods else 'full precision'}")
    for f in failures:
        print(f"  FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
