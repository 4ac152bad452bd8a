#!/usr/bin/env bash
# CTest official_loader: packed checkpoints of gut6l (one file, and split
# over three shards, which gives a three-shard checkpoint), stories260K (padded:
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
# gut6l split over three shards, tensor i into shard i % 3: its checkpoint is sharded like it (issue #15)
"$PY" - "$SHARED/models/gut6l-hf" "$WORK/gut6l-3shards" <<'PY'
import json, os, shutil, struct, sys
src, dst = sys.argv[1:]
os.makedirs(dst)
for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(src, f), dst)
data = open(os.path.join(src, "model.safetensors"), "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
header.pop("__metadata__", None)
names, weight_map = list(header), {}
for k in range(3):
    file, h, blobs, at = f"model-{k + 1:05d}-of-00003.safetensors", {}, [], 0
    for name in names[k::3]:
        t = header[name]
        a, b = t["data_offsets"]
        h[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [at, at + b - a]}
        blobs.append(data[8 + n + a:8 + n + b])
        at += b - a
        weight_map[name] = file
    js = json.dumps(h).encode()
    js += b" " * (-len(js) % 8)
    with open(os.path.join(dst, file), "wb") as fh:
        fh.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))
json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map},
          open(os.path.join(dst, "model.safetensors.index.json"), "w"))
PY
models=("gut6l:$SHARED/models/gut6l-hf" "gut6l-3shards:$WORK/gut6l-3shards"
        "stories260K:$SHARED/models/stories260K/stories260K.bin")
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
    if [ "$name" = gut6l-3shards ] && [ ! -f "$out/model-00003-of-00003.safetensors" ]; then
      echo "$name: the checkpoint is not in three shards"; fail=1
    fi
    "$DUMP" "$out" "$out.ours.safetensors"
    printf '%s %s W%sg%s: ' "$name" "$1" "$2" "$3"
    DASHQ_OFFICIAL_LOADER=$DASHQ_OFFICIAL_LOADER "$PY" "$HERE/official_loader_check.py" "$out" "$out.ours.safetensors" || fail=1
    rm -rf "$out" "$out.ours.safetensors"
  done
done
exit $fail
