#!/usr/bin/env python3
"""Makes two tiny random-weight Hugging Face folders under tests/fixtures/ and
the logits an independent float64 numpy forward pass (written from the HF
modelling code's conventions: rotate_half RoPE, repeat_kv GQA, q/k/v biases for
Qwen2, Llama-3 RoPE scaling) gives for a fixed token list:
  qwen2-tiny/   model_type qwen2, F16 weights, q/k/v biases, untied head, rope_theta 1e6
  llama3-tiny/  model_type llama, F32 weights in two shards + index, llama3 rope_scaling
Usage: /usr/bin/python3 make_tiny_hf.py   (needs python3-numpy)"""
import json, pathlib
import numpy as np

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures"

def write_safetensors(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        raw = arr.astype(dtype).tobytes()
        header[name] = {"dtype": {np.float16: "F16", np.float32: "F32"}[dtype],
                        "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))

def inv_freq(cfg):
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    f = 1.0 / cfg.get("rope_theta", 10000.0) ** (np.arange(0, d, 2) / d)
    rs = cfg.get("rope_scaling")
    if rs and rs["rope_type"] == "llama3":  # transformers' _compute_llama3_parameters
        lo, hi, fac, old = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"], rs["original_max_position_embeddings"]
        wl = 2 * np.pi / f
        scaled = np.where(wl > old / lo, f / fac, f)
        smooth = (old / wl - lo) / (hi - lo)
        mid = (1 - smooth) * scaled / fac + smooth * scaled
        is_mid = ~(wl < old / hi) & ~(wl > old / lo)
        f = np.where(is_mid, mid, scaled)
    return f

def forward(cfg, W, toks):
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]
    T = len(toks)
    norm = lambda x, w: x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
    ang = np.arange(T)[:, None] * inv_freq(cfg)[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    rope = lambda x: x * cos + np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1) * sin
    x = W["model.embed_tokens.weight"][toks]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = norm(x, W[p + "input_layernorm.weight"])
        proj = lambda n: h @ W[p + f"self_attn.{n}_proj.weight"].T + W.get(p + f"self_attn.{n}_proj.bias", 0)
        q, k, v = proj("q").reshape(T, H, D), proj("k").reshape(T, KV, D), proj("v").reshape(T, KV, D)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(D)
        s = s + np.triu(np.full((T, T), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", a, v).reshape(T, H * D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        g, u = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return norm(x, W["model.norm.weight"]) @ head.T

def make(name, cfg, dtype, shards, seed):
    rng = np.random.default_rng(seed)
    d, f, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = d // H
    W = {"model.embed_tokens.weight": rng.normal(0, 1, (V, d)), "model.norm.weight": rng.uniform(0.5, 1.5, d)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = rng.uniform(0.5, 1.5, d)
        W[p + "post_attention_layernorm.weight"] = rng.uniform(0.5, 1.5, d)
        for n, shape in [("q", (H * D, d)), ("k", (KV * D, d)), ("v", (KV * D, d)), ("o", (d, H * D))]:
            W[p + f"self_attn.{n}_proj.weight"] = rng.normal(0, d ** -0.5, shape)
        if cfg["model_type"] == "qwen2":
            for n, rows in [("q", H * D), ("k", KV * D), ("v", KV * D)]:
                W[p + f"self_attn.{n}_proj.bias"] = rng.normal(0, 0.5, rows)
        W[p + "mlp.gate_proj.weight"] = rng.normal(0, d ** -0.5, (f, d))
        W[p + "mlp.up_proj.weight"] = rng.normal(0, d ** -0.5, (f, d))
        W[p + "mlp.down_proj.weight"] = rng.normal(0, f ** -0.5, (d, f))
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = rng.normal(0, d ** -0.5, (V, d))
    W = {k: v.astype(dtype).astype(np.float64) for k, v in W.items()}  # reference sees the stored values
    out = FIX / name
    out.mkdir(exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    names = sorted(W)
    if shards == 1:
        write_safetensors(out / "model.safetensors", {k: W[k] for k in names}, dtype)
    else:
        wmap = {}
        for i in range(shards):
            part = names[i::shards]
            fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(out / fn, {k: W[k] for k in part}, dtype)
            wmap.update({k: fn for k in part})
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}, indent=1))
    toks = [int(t) for t in rng.integers(0, V, 24)]
    (out / "tokens.txt").write_text(" ".join(map(str, toks)) + "\n")
    forward(cfg, W, toks).astype(np.float32).tofile(out / "expected_logits.f32")
    print(name, "ok")

if __name__ == "__main__":  # check_hf_export.py imports forward() only
    make("qwen2-tiny", {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
         "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
         "tie_word_embeddings": False, "torch_dtype": "float16"}, np.float16, 1, 7)
    make("llama3-tiny", {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
         "vocab_size": 200, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 16},
         "tie_word_embeddings": True, "torch_dtype": "float32"}, np.float32, 2, 11)
