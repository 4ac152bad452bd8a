#!/usr/bin/env python3
"""Reference gradients for test_backward from PyTorch autograd, in float64.

Runs a Hugging Face Llama folder (written from the HF modelling code's
conventions: rotate_half RoPE, repeat_kv GQA, RMSNorm, SwiGLU, tied or untied
head) on a window of token ids, takes the mean next-token cross-entropy and
lets autograd give dl/dW for every linear layer and the head (the head as its
own leaf, so a tied embedding's lookup is not counted: dashq's taps report the
head alone). Writes, per linear in the order below, the projections that
test_backward compares (dashq forms dl/dW = sum_t delta_t x_t^T from its taps):
    |G|_F, G v (rows floats), G^T u (cols floats)
with v_j = dir(j), u_i = dir(i) the hash of test_backward.c. Order: blocks
0..L-1, in each q, k, v, o, gate, up, down; then the head. Output: OUT.f32
(little-endian float32: the loss, then the records) and OUT.txt (the tokens,
the loss and the order, for people).

Usage: python3 make_grad_fixture.py MODEL_DIR TOKENS.txt OUT   (Debian's python3-torch)
Made: tests/fixtures/grad/gut6l.{f32,txt} from ../shared/models/gut6l-hf and
tests/fixtures/grad/gut6l_tokens.txt (the first 130 ids dashq's tokenizer gives
for the first 700 bytes of data/gutenberg/calib/gutenberg_calib.txt).
"""
import json, pathlib, struct, sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def load_safetensors(path):
    raw = pathlib.Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base, out = 8 + n, {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        buf = raw[base + a:base + b]
        if t["dtype"] == "BF16":
            arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F16":
            arr = np.frombuffer(buf, "<f2").astype(np.float32)
        elif t["dtype"] == "F32":
            arr = np.frombuffer(buf, "<f4")
        else:
            raise SystemExit(f"{path}: {name}: dtype {t['dtype']} not handled")
        out[name] = torch.tensor(arr.astype(np.float64).reshape(t["shape"]))
    return out


def direction(n):
    i = np.arange(n, dtype=np.uint64)
    h = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) ^ np.uint64(0x9E3779B9)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(12)
    return torch.tensor(((h % np.uint64(2001)).astype(np.float32) / np.float32(1000.0) - np.float32(1.0)).astype(np.float64))


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def main(model_dir, tokens_path, out):
    cfg = json.loads((pathlib.Path(model_dir) / "config.json").read_text())
    W = load_safetensors(pathlib.Path(model_dir) / "model.safetensors")
    ids = torch.tensor([int(t) for t in pathlib.Path(tokens_path).read_text().split()])
    T, d, nh = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    nkv, hd, eps = cfg.get("num_key_value_heads", nh), d // nh, cfg["rms_norm_eps"]
    if cfg.get("rope_scaling"):
        raise SystemExit("rope_scaling is not handled here")
    leaves = {}

    def leaf(name):
        if name not in leaves:
            src = "model.embed_tokens.weight" if name == "lm_head.weight" and name not in W else name
            leaves[name] = W[src].clone().requires_grad_(True)
        return leaves[name]

    inv = 1.0 / cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2) / hd)
    ang = torch.arange(T)[:, None] * inv[None, :]
    cos, sin = torch.cat((ang.cos(), ang.cos()), -1), torch.cat((ang.sin(), ang.sin()), -1)
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = W["model.embed_tokens.weight"][ids]
    order = []
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        lin = lambda n: leaf(p + n + ".weight")
        for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            order.append(p + n + ".weight")
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ lin("self_attn.q_proj").T).view(T, nh, hd).transpose(0, 1)
        k = (h @ lin("self_attn.k_proj").T).view(T, nkv, hd).transpose(0, 1)
        v = (h @ lin("self_attn.v_proj").T).view(T, nkv, hd).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + mask, -1) @ v
        x = x + att.transpose(0, 1).reshape(T, d) @ lin("self_attn.o_proj").T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g, u = h @ lin("mlp.gate_proj").T, h @ lin("mlp.up_proj").T
        x = x + (torch.nn.functional.silu(g) * u) @ lin("mlp.down_proj").T
    order.append("lm_head.weight")
    logits = rmsnorm(x, W["model.norm.weight"], eps) @ leaf("lm_head.weight").T
    loss = torch.nn.functional.cross_entropy(logits[:-1], ids[1:])
    loss.backward()
    rec = [float(loss)]
    for name in order:
        G = leaves[name].grad
        rec += [float(G.norm())] + (G @ direction(G.shape[1])).tolist() + (G.T @ direction(G.shape[0])).tolist()
    pathlib.Path(out + ".f32").write_bytes(struct.pack(f"<{len(rec)}f", *rec))
    pathlib.Path(out + ".txt").write_text(
        f"# made by tests/tools/make_grad_fixture.py {model_dir} {tokens_path} (torch {torch.__version__}, float64)\n"
        f"loss {float(loss):.9f}\ntokens {T}\n" + "".join(f"{n} {tuple(leaves[n].shape)}\n" for n in order))
    print(f"loss {float(loss):.6f} over {T} tokens, {len(order)} linears, {len(rec)} floats")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
