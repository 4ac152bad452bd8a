#!/usr/bin/env bash
# CTest: llama.cpp itself (node-llama-cpp's prebuilt binaries, installed by
# scripts/deps.sh into tests/llamacpp/node_modules) loads every GGUF type
# dashq writes. Q8_0 and F16: llama.cpp's greedy continuation equals ours token
# for token (also a Llama-3-RoPE-scaled model's F16 file). Low-bit types: it
# runs, and its continuation is sane text whose first token is ours.
#   check_gguf_types.sh DASHQ_BIN SHARED_DIR
set -euo pipefail
DQ=$1
SHARED=${DASHQ_SHARED:-$2}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$HERE/node_modules/node-llama-cpp" ] || ! command -v node >/dev/null; then
  echo "node-llama-cpp is not installed (scripts/deps.sh installs it)"
  [ -n "${DASHQ_REQUIRE_LLAMACPP:-}" ] && exit 1
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
N=24
fail=0

# Exact checks: a prompt whose greedy path has no near-ties (llama.cpp
# multiplies Q8_0 weights with 8-bit-quantized activations, so a top-2 logit
# gap of ~0.01 may flip; the long prompt has one at its 4th token).
# Sanity checks: a longer prompt, on which the small model stays fluent.
SHORT="The Time Traveller"
LONG="The Time Traveller (for so it will be convenient to speak of him) was expounding a recondite matter to us. His grey eyes shone and twinkled, and"

check() { # FILE EXACT(1/0) LABEL
  local ids ours theirs prompt=$LONG
  [ "$2" = 1 ] && prompt=$SHORT
  ids=$("$DQ" tokenize "$1" --text "$prompt")
  ours=$("$DQ" generate "$1" -p "$prompt" -n $N --ids --quiet -t 2)
  theirs=$(node "$HERE/greedy.mjs" "$1" $N $ids)
  python3 - "$3" "$2" "$ours" "$theirs" <<'PY' || fail=1
import json, sys
label, exact, ours, r = sys.argv[1], sys.argv[2] == "1", [int(x) for x in sys.argv[3].split()], json.loads(sys.argv[4])
theirs, text = r["ids"], r["text"]
same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
letters = sum(c.isalpha() or c.isspace() or c in ",.;:'\"!?-" for c in text) / max(1, len(text))
ok = (theirs == ours) if exact else (len(theirs) >= 16 and same >= 1 and letters > 0.8 and len(set(theirs)) >= 6)
print(f"{'ok  ' if ok else 'FAIL'} {label:28s} same prefix {same:2d}/{len(ours)}  llama.cpp: {text[:60]!r}")
sys.exit(0 if ok else 1)
PY
}

M=$SHARED/models/gut6l/gut6l.bin
C=$SHARED/data/gutenberg/calib/gutenberg_calib.txt
for t in Q8_0 F16; do
  "$DQ" convert "$M" -o "$WORK/c.gguf" --type $t >/dev/null
  check "$WORK/c.gguf" 1 "gut6l convert $t"
done
for spec in dashq:Q4_0 dashq:Q4_1 gptq:Q5_0 gptq:Q5_1 dashq:Q8_0 gptq:Q2_K dashq:Q3_K_S gptq:Q3_K_M dashq:Q4_K_M \
            gptq:Q5_K_M rtn:Q6_K dashq:IQ4_NL; do
  IFS=: read -r method type <<<"$spec"
  "$DQ" quantize "$M" --method $method --calib "$C" --nsamples 8 --seqlen 128 --format gguf --type $type \
    -o "$WORK/q.gguf" --quiet -t 2 >/dev/null
  check "$WORK/q.gguf" 0 "gut6l $method $type"
done
# Rotated (R1, R2 folded in, norms ones, head untied) and smoothed models are
# plain Llama files to llama.cpp: exact on Q8_0, sane on Q4_K_M (issue #17)
"$DQ" quantize "$M" --method rtn --format gguf --type Q8_0 --rotate hadamard -o "$WORK/q.gguf" --quiet -t 2 >/dev/null
check "$WORK/q.gguf" 1 "gut6l hadamard Q8_0"
"$DQ" quantize "$M" --method gptq --calib "$C" --nsamples 8 --seqlen 128 --format gguf --type Q4_K_M --rotate hadamard \
  --smooth hero --hero-steps 10 -o "$WORK/q.gguf" --quiet -t 2 >/dev/null
check "$WORK/q.gguf" 0 "gut6l gptq+hadamard+hero Q4_K_M"
# Llama-3 RoPE scaling (rope_freqs.weight): gut6l-hf with a llama3 rope_scaling
# block (factor 8 over an original context of 64, so it changes the model)
L3=$WORK/gut6l-llama3
mkdir "$L3"
for f in "$SHARED"/models/gut6l-hf/*; do [ "$(basename "$f")" = config.json ] || ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$L3/"; done
python3 - "$SHARED/models/gut6l-hf/config.json" "$L3/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}
json.dump(c, open(sys.argv[2], "w"))
PY
"$DQ" convert "$L3" -o "$WORK/l3.gguf" --type F16 >/dev/null
check "$WORK/l3.gguf" 1 "gut6l-hf llama3-rope F16"
# stories260K: widths 64 and 172 take llama.cpp's fallbacks (IQ4_NL, Q8_0, F16)
S=$SHARED/models/stories260K/stories260K.bin
"$DQ" quantize "$S" --tokenizer "$SHARED/models/stories260K/tok512.bin" --method rtn --format gguf --type Q2_K \
  -o "$WORK/s.gguf" --quiet -t 2 >/dev/null
check "$WORK/s.gguf" 0 "stories260K rtn Q2_K"
exit $fail
