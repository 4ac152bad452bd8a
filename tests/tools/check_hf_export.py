#!/usr/bin/env python3
"""Checks a folder written by `dashq convert --format hf` with code no one here
wrote: the `safetensors` package reads model.safetensors (names, shapes,
dtypes against config.json), then the float64 numpy forward pass of
make_tiny_hf.py (written from transformers' conventions: rotate_half RoPE,
repeat_kv) runs the exported weights and its logits are compared with dashq's
on the SOURCE model (tests/tools/dump_logits), so a wrong q/k permutation or
tensor name shows up as a logit gap.
Usage: python check_hf_export.py DIR SOURCE_MODEL DUMP_LOGITS   (pip install safetensors numpy)
Not a CI test (needs the pip packages)."""
import json, pathlib, subprocess, sys, tempfile
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_tiny_hf import forward  # noqa: E402

def load(path):
    """F32 through safetensors.numpy; BF16 (numpy has no bfloat16) as raw uint16 widened by hand."""
    with safe_open(path, "np") as f:
        names = list(f.keys())
        shapes = {n: tuple(f.get_slice(n).get_shape()) for n in names}
        dtypes = {n: f.get_slice(n).get_dtype() for n in names}
    if set(dtypes.values()) == {"F32"}:
        return {k: v.astype(np.float64) for k, v in load_file(path).items()}, shapes, dtypes
    raw = open(path, "rb").read()
    hlen = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + hlen])
    W = {}
    for n in names:
        a, b = header[n]["data_offsets"]
        u = np.frombuffer(raw[8 + hlen + a:8 + hlen + b], dtype=np.uint16).astype(np.uint32) << 16
        W[n] = u.view(np.float32).astype(np.float64).reshape(shapes[n])
    return W, shapes, dtypes

def expected_names(cfg):
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not cfg["tie_word_embeddings"]:
        names.add("lm_head.weight")
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        names |= {p + s for s in ("input_layernorm.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                                  "mlp.up_proj.weight", "mlp.down_proj.weight")}
        names |= {p + f"self_attn.{n}_proj.weight" for n in "qkvo"}
        if cfg["model_type"] == "qwen2":
            names |= {p + f"self_attn.{n}_proj.bias" for n in "qkv"}
    return names

def main(out_dir, source, dump_logits):
    d = pathlib.Path(out_dir)
    cfg = json.loads((d / "config.json").read_text())
    W, shapes, dtypes = load(str(d / "model.safetensors"))
    assert set(W) == expected_names(cfg), sorted(set(W) ^ expected_names(cfg))
    want = {"F32": "float32", "BF16": "bfloat16"}
    assert {want[t] for t in dtypes.values()} == {cfg["torch_dtype"]}, (set(dtypes.values()), cfg["torch_dtype"])
    V, dim = cfg["vocab_size"], cfg["hidden_size"]
    assert shapes["model.embed_tokens.weight"] == (V, dim)
    assert cfg["head_dim"] * cfg["num_attention_heads"] == dim, "make_tiny_hf's forward assumes head_dim = hidden/heads"
    toks = [(i * 37 + 1) % V for i in range(32)]
    ref = forward(cfg, W, toks)
    with tempfile.TemporaryDirectory() as tmp:
        tp, lp = pathlib.Path(tmp) / "toks.txt", pathlib.Path(tmp) / "logits.f32"
        tp.write_text(" ".join(map(str, toks)) + "\n")
        subprocess.run([dump_logits, source, str(tp), str(lp)], check=True)
        ours = np.fromfile(lp, dtype=np.float32).reshape(len(toks), V)
    gap = np.abs(ours - ref).max()
    print(f"{out_dir}: {len(W)} tensors, {cfg['torch_dtype']}; numpy forward on the export vs dashq on {source}: "
          f"max |logit diff| {gap:.3g} (logit range {np.abs(ref).max():.3g})")
    return gap / np.abs(ref).max()

if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rel = main(*sys.argv[1:])
    sys.exit(0 if rel < (1e-4 if "float32" in open(pathlib.Path(sys.argv[1]) / "config.json").read() else 5e-2) else 1)
