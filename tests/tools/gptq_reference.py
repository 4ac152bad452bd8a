#!/usr/bin/env python3
"""Cross-check of dashq's GPTQ against the IST-DASLab reference (gptq.py and
quant.py from github.com/IST-DASLab/gptq, not part of this repository; pass
the folder holding them). Runs on CPU with Debian's python3-torch.

For real gut6l weight matrices and a Hessian from correlated, heavy-tailed
synthetic activations (with a few dead channels), it runs the reference
fasterquant, records its integer codes and per-column (scale, zero) through a
wrapper around its quantize(), runs build/tests/quant_tool on the same W and
H (fp32 parameters, as the reference keeps them), and reports the fraction of
identical codes and parameters.

Usage: /usr/bin/python3 tests/tools/gptq_reference.py GPTQ_DIR SHARED_DIR [BUILD_DIR]
       ... GPTQ_DIR SHARED_DIR BUILD_DIR --hf HF_DIR IDS   real activations instead: layer 0's
           q_proj, gate_proj and up_proj of a Hugging Face folder (F32 safetensors, e.g.
           `dashq convert MODEL --format hf --type F32`), fed the RMS-normed embeddings of the token
           ids in IDS (whitespace-separated, `dashq tokenize`), as the pipeline's first block sees them
       ... GPTQ_DIR SHARED_DIR --fixture   writes tests/fixtures/gptq/ (W = first 64 rows of
       gut6l layer-5 wq, H, and the reference's codes/scales/zeros) for test_quant.c"""
import os, subprocess, sys, tempfile, types
import numpy as np
import torch

gptq_dir, shared = sys.argv[1], sys.argv[2]
build = sys.argv[3] if len(sys.argv) > 3 else "build"
sys.modules["transformers"] = types.SimpleNamespace(Conv1D=type("Conv1D", (), {}))
sys.path.insert(0, gptq_dir)
torch.cuda.synchronize = lambda *a: None
import gptq as ref  # noqa: E402
import quant as refq  # noqa: E402

def llama2c_weights(path):
    hdr = np.fromfile(path, dtype=np.int32, count=7)
    dim, hidden, L, H, KV, V, S = [int(x) for x in hdr]
    f = np.fromfile(path, dtype=np.float32, offset=28)
    hd = dim // H
    off = V * dim
    out = {}
    def take(n, shape, name):
        nonlocal off
        a = f[off:off + n * L].reshape(L, *shape); off += n * L; out[name] = a
    take(dim, (dim,), "attn_norm"); take(dim * H * hd, (H * hd, dim), "wq"); take(dim * KV * hd, (KV * hd, dim), "wk")
    take(dim * KV * hd, (KV * hd, dim), "wv"); take(H * hd * dim, (dim, H * hd), "wo"); take(dim, (dim,), "ffn_norm")
    take(dim * hidden, (hidden, dim), "w1"); take(hidden * dim, (dim, hidden), "w2"); take(dim * hidden, (hidden, dim), "w3")
    return out

def activations(cols, n, seed):
    g = np.random.default_rng(seed)
    A = g.normal(size=(cols, cols)) / np.sqrt(cols) + np.eye(cols)
    X = g.standard_t(4, size=(n, cols)) @ A
    X *= np.exp(g.normal(0, 1, cols))         # channel scales spread over ~e^±2
    X[:, g.choice(cols, 3, replace=False)] = 0  # dead channels
    return X.astype(np.float32)

def reference(W, X, bits, group, act_order):
    layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data = torch.tensor(W)
    g = ref.GPTQ(layer)
    g.quantizer = refq.Quantizer()
    g.quantizer.configure(bits, perchannel=True, sym=False, mse=False)
    for b in range(0, X.shape[0], 256):  # add_batch as the reference driver feeds it
        g.add_batch(torch.tensor(X[b:b + 256]).unsqueeze(0), None)
    H = g.H.clone()
    cols = []
    orig = ref.quantize
    def spy(x, scale, zero, maxq):
        q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
        cols.append((q.flatten().clone(), scale.flatten().clone(), zero.flatten().clone()))
        return orig(x, scale, zero, maxq)
    ref.quantize = spy
    g.fasterquant(blocksize=128, percdamp=0.01, groupsize=group, actorder=act_order, static_groups=act_order)
    ref.quantize = orig
    n = W.shape[1]
    perm = torch.argsort(torch.diag(H), descending=True).numpy() if act_order else np.arange(n)
    Q = np.zeros(W.shape, np.uint8); S = np.zeros(W.shape, np.float32); Z = np.zeros(W.shape, np.float32)
    for i, (q, s, z) in enumerate(cols):
        Q[:, perm[i]] = q.numpy(); S[:, perm[i]] = s.numpy(); Z[:, perm[i]] = z.numpy()
    return H.numpy(), Q, S, Z

def ours(W, H, bits, group, act_order, tmp):
    W.astype(np.float32).tofile(f"{tmp}/W.f32"); H.astype(np.float32).tofile(f"{tmp}/H.f32")
    subprocess.run([f"{build}/tests/quant_tool", "gptq", str(bits), str(group), str(int(act_order)), "0",
                    f"{tmp}/W.f32", str(W.shape[0]), str(W.shape[1]), f"{tmp}/H.f32", f"{tmp}/out"], check=True)
    G = group if group > 0 else W.shape[1]
    q = np.fromfile(f"{tmp}/out.q", np.uint8).reshape(W.shape)
    s = np.repeat(np.fromfile(f"{tmp}/out.scale", np.float32).reshape(W.shape[0], -1), G, axis=1)
    z = np.repeat(np.fromfile(f"{tmp}/out.zero", np.float32).reshape(W.shape[0], -1), G, axis=1)
    return q, s, z

def safetensors(path):
    import json, struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        base = 8 + n
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    def get(name):
        t = head[name]
        assert t["dtype"] == "F32", f"{path}: {name} is {t['dtype']}, want F32 (dashq convert --type F32)"
        a, b = t["data_offsets"]
        return np.frombuffer(raw[base + a:base + b], dtype=np.float32).reshape(t["shape"])
    return get

def real_cases(hf, ids_file):
    """Layer 0's inputs: RMSNorm(embedding[ids]) * input_layernorm, exactly what
    the pipeline accumulates H from in the first block (no upstream layer)."""
    import json
    cfg = json.load(open(os.path.join(hf, "config.json")))
    get = safetensors(os.path.join(hf, "model.safetensors"))
    ids = np.array(open(ids_file).read().split(), dtype=np.int64)[:4096]
    E = get("model.embed_tokens.weight")[ids].astype(np.float64)
    X = E / np.sqrt((E * E).mean(axis=1, keepdims=True) + cfg["rms_norm_eps"])
    X = (X * get("model.layers.0.input_layernorm.weight")).astype(np.float32)
    return [(f"layer0.{m}", np.ascontiguousarray(get(f"model.layers.0.{m}.weight")), X)
            for m in ("self_attn.q_proj", "mlp.gate_proj", "mlp.up_proj")]

if "--hf" in sys.argv:
    i = sys.argv.index("--hf")
    cases = real_cases(sys.argv[i + 1], sys.argv[i + 2])
    configs = [(4, 64, False), (3, 64, False), (3, 64, True), (2, 32, False), (2, 32, True)]  # groups dividing 576
else:
    weights = llama2c_weights(os.path.join(shared, "models/gut6l/gut6l.bin"))
    cases = [(f"{n}[{l}]", weights[n][l], activations(weights[n][l].shape[1], 4096, l)) for n, l in [("w1", 0), ("w2", 3), ("wq", 5)]]
    configs = [(4, 128, False), (3, 128, False), (3, 64, False), (2, 32, False), (4, -1, False), (3, 128, True), (2, 32, True)]
if build == "--fixture":
    fix = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gptq")
    os.makedirs(fix, exist_ok=True)
    W = np.ascontiguousarray(weights["wq"][5][:64])
    X = activations(W.shape[1], 4096, 5)
    for bits, group, act in [(3, 64, False), (2, 32, True), (4, -1, False)]:
        H, Q, S, Z = reference(W, X, bits, group, act)
        tag = f"w{bits}g{group}{'_act' if act else ''}"
        H.astype(np.float32).tofile(f"{fix}/H.f32")
        Q.tofile(f"{fix}/{tag}.q")
        G = group if group > 0 else W.shape[1]
        S[:, ::G].astype(np.float32).tofile(f"{fix}/{tag}.scale")
        Z[:, ::G].astype(np.float32).tofile(f"{fix}/{tag}.zero")
    print("fixture written to", fix)
    sys.exit(0)
worst = 1.0
with tempfile.TemporaryDirectory() as tmp:
    for name, W, X in cases:
        for bits, group, act in configs:
            H, Qr, Sr, Zr = reference(W, X, bits, group, act)
            Qo, So, Zo = ours(W, H, bits, group, act, tmp)
            same = (Qr == Qo).mean()
            ps = np.isclose(Sr, So, rtol=1e-5, atol=0).mean(); pz = (Zr == Zo).mean()
            worst = min(worst, same)
            print(f"{name} {W.shape} w{bits} g{group} act_order={act}: codes {100*same:.3f}% equal, "
                  f"scales {100*ps:.2f}%, zeros {100*pz:.2f}%")
print(f"worst: {100*worst:.3f}% of codes equal")
sys.exit(0 if worst >= 0.999 else 1)
