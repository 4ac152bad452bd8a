#!/usr/bin/env python3
"""Writes the committed seed corpora of the libFuzzer targets
(tests/fuzz/corpus/TARGET/) from the fixtures and ../shared, shrunk to a few
KB each: tiny models of the shapes our loaders expect, the real tokenizers'
structure (normalizer, pre-tokenizer, post-processor, added tokens, config)
with their first few hundred pieces and the merges among them. Only the
standard library; run from anywhere:  tests/fuzz/make_corpus.py
The kld seeds are written by the fuzz_kld binary itself (DQ_FUZZ_KLD_SEEDS,
see run.sh), as our own writer produced them."""
import json
import math
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SHARED = os.environ.get("DASHQ_SHARED", os.path.join(ROOT, "..", "shared"))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
SEP = b"\n=====8<=====\n"  # FZ_SEP in fuzz_util.h


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def shared(rel, mode="rb"):
    with open(os.path.join(SHARED, rel), mode) as f:
        return f.read()


def jdump(o):
    return json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode()


def f16(x):
    return struct.pack("<e", x)


def weights(n, k0, dtype):
    vals = [0.3 * math.sin(0.37 * (k0 + i)) for i in range(n)]
    if dtype == "F32":
        return b"".join(struct.pack("<f", v) for v in vals)
    if dtype == "F16":
        return b"".join(f16(v) for v in vals)
    return b"".join(struct.pack("<f", v)[2:] for v in vals)  # BF16: top half


def safetensors(tensors, meta=True):
    """tensors: [(name, dtype, shape, bytes)] -> file bytes, header padded to 8."""
    hdr, off = {}, 0
    if meta:
        hdr["__metadata__"] = {"format": "pt"}
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = jdump(hdr)
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


# ---- tiny HF models -------------------------------------------------------

def hf_model(arch, dtype, dim=8, hidden=16, layers=1, heads=2, kv=1, vocab=16, tied=True, skip=()):
    hd = dim // heads
    shapes = [("model.embed_tokens.weight", [vocab, dim]), ("model.norm.weight", [dim])]
    for l in range(layers):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", [dim]), (p + "post_attention_layernorm.weight", [dim]),
                   (p + "self_attn.q_proj.weight", [heads * hd, dim]), (p + "self_attn.k_proj.weight", [kv * hd, dim]),
                   (p + "self_attn.v_proj.weight", [kv * hd, dim]), (p + "self_attn.o_proj.weight", [dim, heads * hd]),
                   (p + "mlp.gate_proj.weight", [hidden, dim]), (p + "mlp.up_proj.weight", [hidden, dim]),
                   (p + "mlp.down_proj.weight", [dim, hidden])]
        if arch == "qwen2":
            shapes += [(p + "self_attn.q_proj.bias", [heads * hd]), (p + "self_attn.k_proj.bias", [kv * hd]),
                       (p + "self_attn.v_proj.bias", [kv * hd])]
    if not tied:
        shapes.append(("lm_head.weight", [vocab, dim]))
    tensors, k = [], 0
    for name, shape in shapes:
        if name in skip:
            continue
        n = math.prod(shape)
        tensors.append((name, dtype, shape, weights(n, k, dtype)))
        k += n
    cfg = {"architectures": ["X"], "model_type": arch, "hidden_size": dim, "intermediate_size": hidden,
           "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
           "vocab_size": vocab, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": [2, 3]}
    return cfg, tensors


def packed(cfg, tensors, modules, bits, group):
    """Replaces modules' NAME.weight by DASH-Q packed codes/scale/zero."""
    out, qmods = [], {}
    by = {t[0]: t for t in tensors}
    for name, dt, shape, data in tensors:
        mod = name[:-len(".weight")]
        if mod not in modules:
            out.append((name, dt, shape, data))
            continue
        rows, cols = shape
        qin = (cols + group - 1) // group * group
        n, per = rows * qin, 32 // bits
        codes = [(i * 5 + 1) % (1 << bits) for i in range(n)]
        words = []
        for w in range((n + per - 1) // per):
            v = 0
            for k in range(per):
                if w * per + k < n:
                    v |= codes[w * per + k] << (k * bits)
            words.append(v)
        groups = rows * (qin // group)
        out.append((mod + ".W_q_packed", "I32", [len(words)], b"".join(struct.pack("<I", v) for v in words)))
        out.append((mod + ".scale", "F16", [groups, 1], b"".join(f16(0.01 * (1 + g % 3)) for g in range(groups))))
        out.append((mod + ".zero", "F16", [groups, 1], b"".join(f16(float(g % (1 << bits))) for g in range(groups))))
        qmods[mod] = {"in_features": cols, "out_features": rows, "quant_in_features": qin, "nbits": bits,
                      "group_size": group, "num_groups": groups}
        del by[name]
    qcfg = {"format": "dashq-packed-linear", "method": "dashq", "base_model": "tiny", "quantized_modules": qmods}
    return out, qcfg


def hf_seeds():
    cfg, t = hf_model("llama", "F16")
    put("safetensors", "tiny-llama-f16", safetensors(t))
    put("hf", "llama-f16", SEP.join([jdump(cfg), safetensors(t)]))
    cfg, t = hf_model("qwen2", "BF16", tied=False)
    put("safetensors", "tiny-qwen2-bf16", safetensors(t, meta=False))
    put("hf", "qwen2-bf16-untied", SEP.join([jdump(cfg), safetensors(t)]))
    cfg, t = hf_model("mistral", "F32", hidden=12, kv=2)
    cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 32}
    put("hf", "mistral-f32-llama3rope", SEP.join([jdump(cfg), safetensors(t)]))
    # sharded: the index names model.safetensors for every tensor
    cfg, t = hf_model("llama", "F16", tied=False)
    index = {"metadata": {"total_size": 0}, "weight_map": {n: "model.safetensors" for n, *_ in t}}
    put("hf", "llama-index", SEP.join([jdump(cfg), safetensors(t), b"", jdump(index)]))
    # DASH-Q packed: 4-bit g4 on q/k/v/o, 3-bit g8 on the MLP (down_proj padded 12 -> 16)
    cfg, t = hf_model("llama", "F16", hidden=12)
    mods = {"model.layers.0.self_attn." + p for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
    t, q1 = packed(cfg, t, mods, 4, 4)
    mods = {"model.layers.0.mlp." + p for p in ("gate_proj", "up_proj", "down_proj")}
    t, q2 = packed(cfg, t, mods, 3, 8)
    q1["quantized_modules"].update(q2["quantized_modules"])
    put("hf", "packed-llama", SEP.join([jdump(cfg), safetensors(t), jdump(q1)]))
    put("safetensors", "packed-llama", safetensors(t))
    # the fixtures' real headers (their data cut off: the offsets then lie)
    for rel in ("llama3-tiny/model-00002-of-00002.safetensors", "qwen2-tiny/model.safetensors"):
        with open(os.path.join(ROOT, "tests", "fixtures", rel), "rb") as f:
            data = f.read()
        hl = struct.unpack("<Q", data[:8])[0]
        put("safetensors", "header-" + rel.split("/")[0], data[:8 + hl])
    put("hf", "qwen2-tiny-config", open(os.path.join(ROOT, "tests", "fixtures", "qwen2-tiny", "config.json"), "rb").read())


# ---- llama2.c ---------------------------------------------------------------

def llama2c(dim=8, hidden=16, layers=1, heads=2, kv=2, vocab=16, seq=8, shared=True):
    hd = dim // heads
    h = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
    n = vocab * dim + layers * (dim + dim * heads * hd + 2 * dim * kv * hd + heads * hd * dim + dim + 3 * dim * hidden)
    n += dim + seq * hd + (0 if shared else vocab * dim)
    return h + weights(n, 0, "F32")


def llama2c_seeds():
    put("llama2c", "tiny-shared", llama2c())
    put("llama2c", "tiny-classifier-gqa", llama2c(kv=1, shared=False, layers=2))
    put("llama2c", "stories260K-header", shared("models/stories260K/stories260K.bin")[:28])


# ---- tokenizers -------------------------------------------------------------

def shrink_hf_json(j, keep):
    m = j["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges[:200]
    added = [a for a in j.get("added_tokens") or [] if a["id"] < keep][:8]
    for a in (j.get("added_tokens") or []):
        if a["id"] >= keep and len(added) < 8:  # a high special id (GPT-2's <|endoftext|>) moves to the end
            added.append(dict(a, id=keep + len(added)))
    j["added_tokens"] = added
    return j


def tok_seeds():
    gut = shrink_hf_json(json.loads(shared("models/gut6l-hf/tokenizer.json")), 300)
    put("tokenizer", "json-gut6l", b"\x00" + SEP.join([jdump(gut), shared("models/gut6l-hf/tokenizer_config.json")]))
    mis = shrink_hf_json(json.loads(shared("models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.json")), 300)
    cfg = {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>",
           "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"}]}
    put("tokenizer", "json-mistral", b"\x00" + SEP.join([jdump(mis), jdump(cfg)]))
    gpt = shrink_hf_json(json.loads(shared("models/tokenizers/gpt2/tokenizer.json")), 300)
    put("tokenizer", "json-gpt2", b"\x00" + jdump(gpt) + SEP + SEP + b"{{ messages[0]['content'] }}")
    # a Split/Digits/NFC/Replace variant on the GPT-2 vocabulary (the pre-tokenizers our loader knows)
    var = dict(gpt)
    var["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    var["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    var["post_processor"] = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}]}
    put("tokenizer", "json-split-digits", b"\x00" + jdump(var))
    for name, d in (("gpt2", "gpt2"), ("qwen2", "qwen2-1.5b-instruct")):
        vocab = json.loads(shared(f"models/tokenizers/{d}/vocab.json"))
        small = {k: v for k, v in vocab.items() if v < 300}
        merges = [ln for ln in shared(f"models/tokenizers/{d}/merges.txt", "r").split("\n")[1:4000]
                  if " " in ln and all(p in small for p in ln.split(" ")) and ln.replace(" ", "") in small][:200]
        tcfg = json.loads(shared(f"models/tokenizers/{d}/tokenizer_config.json"))
        if "added_tokens_decoder" in tcfg:
            tcfg["added_tokens_decoder"] = {str(300 + i): v for i, v in enumerate(tcfg["added_tokens_decoder"].values())}
        put("tokenizer", "vocab-merges-" + name,
            b"\x01" + SEP.join([jdump(small), ("#version: 0.2\n" + "\n".join(merges) + "\n").encode(), jdump(tcfg)]))
    tok512 = shared("models/stories260K/tok512.bin")
    put("tokenizer", "bin-tok512", b"\x02" + tok512)
    put("tokenizer", "bin-tok512-with-model", b"\x02" + tok512 + SEP + shared("models/stories260K/tok512.model"))
    put("tokenizer", "model-tok512", b"\x03" + shared("models/stories260K/tok512.model"))


def main():
    hf_seeds()
    llama2c_seeds()
    tok_seeds()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"corpus: {total} bytes under {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
