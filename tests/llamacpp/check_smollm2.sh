#!/usr/bin/env bash
# CTest: dashq against llama.cpp itself (node-llama-cpp's prebuilt binaries)
# on a real model, SmolLM2-135M-Instruct as llama.cpp's Q4_1 GGUF (fetched by
# scripts/models.sh; byte-level BPE with the "smollm" pre-tokenizer, ChatML):
#  1. tokenization, id for id, of every string of tests/fixtures/tokenizer,
#     tests/llamacpp/strings_extra.jsonl (digits, numbers, code, whitespace
#     runs, unicode), the paragraphs of a Gutenberg book and the repository's
#     own sources in chunks; with and without parsing special tokens;
#  2. the chat prompt: `dashq tokenize --chat` equals llama.cpp's tokens of the
#     text its llm_chat_apply_template renders for ChatML (written out below);
#     (also with --system);
#  3. greedy generation, token for token, from that chat prompt (30 tokens,
#     then <|im_end|>) and from a plain prompt (32 tokens). llama.cpp
#     multiplies Q4_1 weights with 8-bit-quantized activations, so a near-tie
#     could flip: these prompts were picked for their margins, dashq's smallest
#     top-2 logit gap along each greedy path being 0.31 (chat; 0.73 for the
#     stop) and 1.90 (plain). A mismatch prints dashq's gap where the paths part.
#     (--system with "You are an astronomer. Answer in one sentence." also
#     matched, 25 tokens, smallest gap 0.20; left out: node-llama-cpp's prebuilt
#     CPU build decodes this model at ~2 tokens/s here, and the test must stay
#     under 2 minutes on 2 cores.)
# Skips (77) when the model is not cached or node-llama-cpp is missing, unless
# DASHQ_REQUIRE_MODELS / DASHQ_REQUIRE_LLAMACPP is set.
#   check_smollm2.sh DASHQ_BIN DUMP_LOGITS_BIN SHARED_DIR
set -euo pipefail
DQ=$1
DUMP=$2
SHARED=${DASHQ_SHARED:-$3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ ! -d "$HERE/node_modules/node-llama-cpp" ] || ! command -v node >/dev/null; then
  echo "node-llama-cpp is not installed (scripts/deps.sh installs it)"
  [ -n "${DASHQ_REQUIRE_LLAMACPP:-}" ] && exit 1
  exit 77
fi
if ! M=$("$ROOT/scripts/models.sh" --offline --path smollm2-135m 2>/dev/null); then
  echo "smollm2-135m is not cached (scripts/models.sh fetches it)"
  [ -n "${DASHQ_REQUIRE_MODELS:-}" ] && exit 1
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The strings: fixtures, extra cases, a book's paragraphs, our own code.
python3 - "$ROOT" "$SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt" "$WORK/strings.jsonl" <<'PY'
import glob, json, os, re, sys
root, book, out = sys.argv[1:]
s = []
for f in ["tests/fixtures/tokenizer/strings.jsonl", "tests/llamacpp/strings_extra.jsonl"]:
    s += [json.loads(l) for l in open(os.path.join(root, f), encoding="utf-8") if l.strip()]
if os.path.exists(book):
    s += [p for p in re.split(r"\n\s*\n", open(book, encoding="utf-8").read()) if p.strip()][:800]
for f in sorted(glob.glob(os.path.join(root, "src/*/*.[ch]")))[:60]:
    t = open(f, encoding="utf-8").read()
    s += [t[i:i + 1200] for i in range(0, len(t), 1200)]
with open(out, "w", encoding="utf-8") as o:
    o.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in s)
print(f"{len(s)} strings, {sum(map(len, s))} characters")
PY

# The chat prompts as llama.cpp's llm_chat_apply_template renders ChatML (no
# default system turn; add_ass = true), and the plain prompt.
USER="Name the planets of the solar system."
SYSTEM="You are an astronomer. Answer in one sentence."
CHAT="<|im_start|>user
$USER<|im_end|>
<|im_start|>assistant
"
CHAT_SYS="<|im_start|>system
$SYSTEM<|im_end|>
$CHAT"
PLAIN="1, 2, 3, 4, 5, 6, 7, 8,"
N=32
python3 - "$WORK" "$CHAT" "$CHAT_SYS" "$PLAIN" $N >"$WORK/job.json" <<'PY'
import json, sys
w, chat, chat_sys, plain, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
print(json.dumps({"tokenize": [{"file": w + "/strings.jsonl", "special": False},
                               {"file": w + "/strings.jsonl", "special": True}],
                  "greedy": [{"text": chat, "special": True, "n": n}, {"text": chat_sys, "special": True, "n": 0},
                             {"text": plain, "special": False, "n": n}]}))
PY
node "$HERE/llama_job.mjs" "$M" "$WORK/job.json" >"$WORK/llama.json"

"$DQ" tokenize "$M" --jsonl "$WORK/strings.jsonl" >"$WORK/dq.jsonl"
"$DQ" tokenize "$M" --jsonl "$WORK/strings.jsonl" --special >"$WORK/dq_special.jsonl"
"$DQ" tokenize "$M" --chat --text "$USER" >"$WORK/chat_prompt"
"$DQ" tokenize "$M" --chat --system "$SYSTEM" --text "$USER" >"$WORK/chat_sys_prompt"
"$DQ" generate "$M" --chat --prompt "$USER" -n $N --ids --quiet -t 2 >"$WORK/chat_ids"
"$DQ" tokenize "$M" --text "$PLAIN" >"$WORK/plain_prompt"
"$DQ" generate "$M" --prompt "$PLAIN" -n $N --ids --quiet -t 2 >"$WORK/plain_ids"

python3 - "$WORK" "$DUMP" "$M" <<'PY'
import array, json, os, subprocess, sys
w, dump, model = sys.argv[1:]
r = json.load(open(w + "/llama.json"))
strings = [json.loads(l) for l in open(w + "/strings.jsonl", encoding="utf-8")]
fail = 0

def ids(name):
    return [int(x) for x in open(os.path.join(w, name)).read().split()]

for k, (name, label) in enumerate([("dq.jsonl", "plain"), ("dq_special.jsonl", "special tokens parsed")]):
    ours = [json.loads(l) for l in open(os.path.join(w, name))]
    bad = [i for i in range(len(strings)) if ours[i] != r["tokenize"][k][i]]
    print(f"{'ok  ' if not bad else 'FAIL'} tokenization ({label}): {len(strings) - len(bad)}/{len(strings)} strings identical")
    for i in bad[:5]:
        print(f"     {strings[i][:60]!r}\n       llama.cpp {r['tokenize'][k][i][:24]}\n       dashq     {ours[i][:24]}")
    fail |= bool(bad)

def gap_at(prompt, gen, pos):
    """dashq's top-2 logit gap where token gen[pos] was chosen."""
    toks = prompt + gen[:pos]
    open(w + "/toks.txt", "w").write(" ".join(map(str, toks)))
    subprocess.run([dump, model, w + "/toks.txt", w + "/logits.f32"], check=True)
    a = array.array("f")
    a.frombytes(open(w + "/logits.f32", "rb").read())
    v = len(a) // len(toks)
    row = sorted(a[(len(toks) - 1) * v:], reverse=True)
    return row[0] - row[1]

for g, (label, pname, gname) in zip(r["greedy"], [("chat", "chat_prompt", "chat_ids"),
                                                   ("chat --system", "chat_sys_prompt", None),
                                                   ("plain", "plain_prompt", "plain_ids")]):
    prompt = ids(pname)
    if prompt != g["prompt"]:
        print(f"FAIL {label}: prompt tokens differ\n       llama.cpp {g['prompt']}\n       dashq     {prompt}")
        fail = 1
        continue
    if not gname:
        print(f"ok   {label}: {len(prompt)} prompt tokens equal")
        continue
    gen = ids(gname)
    same = next((i for i, (a, b) in enumerate(zip(gen, g["ids"])) if a != b), min(len(gen), len(g["ids"])))
    ok = gen == g["ids"]
    print(f"{'ok  ' if ok else 'FAIL'} greedy {label}: {len(prompt)} prompt tokens equal, {same}/{len(g['ids'])} generated equal; "
          f"llama.cpp: {g['text'][:70]!r}")
    if not ok:
        print(f"       llama.cpp {g['ids']}\n       dashq     {gen}")
        if same < len(gen):
            print(f"       dashq's top-2 logit gap at token {same}: {gap_at(prompt, gen, same):.3f} "
                  "(below ~0.1 a near-tie that 8-bit activations may flip)")
        fail = 1
sys.exit(fail)
PY
