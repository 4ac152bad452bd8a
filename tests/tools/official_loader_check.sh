#!/usr/bin/env bash
# CTest official_loader: packed checkpoints of gut6l, stories260K (padded:
# widths 64 and 172) and, when scripts/models.sh has cached it, SmolLM2-135M
# (width 576, padded at g128), at W4g128, W3g128 and W2g32, each opened with
# the official DASH-Q loader's own unpacking and dequantization code
# (tests/tools/official_loader_check.py). Skipped (77) unless
# $DASHQ_OFFICIAL_LOADER names a copy of github.com/JaeminK/dashq and torch
# imports (Debian: python3-torch).
#   official_loader_check.sh DASHQ_BIN DUMP_WEIGHTS_BIN SHARED_DIR
set -euo pipefail
DQ=$1 DUMP=$2
SHARED=${DASHQ_SHARED:-$3}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${DASHQ_PYTHON:-/usr/bin/python3}
[ -n "${DASHQ_OFFICIAL_LOADER:-}" ] || { echo "DASHQ_OFFICIAL_LOADER is not set; skipping"; exit 77; }
"$PY" -c "import torch" 2>/dev/null || { echo "$PY has no torch; skipping"; exit 77; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CAL=$SHARED/data/gutenberg/calib/gutenberg_calib.txt
SMOL=${DASHQ_MODELS:-$HOME/.cache/dashq/models}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
models=("gut6l:$SHARED/models/gut6l-hf" "stories260K:$SHARED/models/stories260K/stories260K.bin")
[ -f "$SMOL" ] && models+=("smollm2:$SMOL") || echo "SmolLM2-135M is not cached (scripts/models.sh): not checked"
fail=0
for entry in "${models[@]}"; do
  name=${entry%%:*} model=${entry#*:}
  tok=()
  [ "$name" = stories260K ] && tok=(--tokenizer "$SHARED/models/stories260K/tok512.bin")
  for cfg in "dashq 4 128" "gptq 3 128" "dashq 2 32"; do
    set -- $cfg
    out=$WORK/$name-$1-w$2g$3
    "$DQ" quantize "$model" "${tok[@]}" --method "$1" --bits "$2" --group "$3" --calib "$CAL" \
      --nsamples 2 --seqlen 64 -t 2 --quiet -o "$out" > /dev/null
    "$DUMP" "$out" "$out.ours.safetensors"
    printf '%s %s W%sg%s: ' "$name" "$1" "$2" "$3"
    DASHQ_OFFICIAL_LOADER=$DASHQ_OFFICIAL_LOADER "$PY" "$HERE/official_loader_check.py" "$out" "$out.ours.safetensors" || fail=1
    rm -rf "$out" "$out.ours.safetensors"
  done
done
exit $fail
