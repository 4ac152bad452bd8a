#!/usr/bin/env bash
# Newcomer's first command: install what is missing, build, and run dashq on a
# real bundled model (gut6l, 5.8M parameters, from ../shared/models).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${DASHQ_SHARED:-../shared}
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== dashq info"
build/dashq info "$SHARED/models/gut6l/gut6l.bin"
echo "== perplexity of gut6l on a held-out book (The Time Machine), 256-token windows"
build/dashq eval "$SHARED/models/gut6l/gut6l.bin" --ppl "$SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt" --ctx 256
echo "== greedy continuation"
build/dashq generate "$SHARED/models/gut6l/gut6l.bin" --prompt "The Time Traveller" -n 48
echo
OUT=${TMPDIR:-/tmp}/dashq-quickstart
mkdir -p "$OUT"
BOOK="$SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt"
echo "== the main job: quantize gut6l to 3 bits with DASH-Q (32 calibration windows)"
build/dashq eval "$SHARED/models/gut6l/gut6l.bin" --ppl "$BOOK" --ctx 256 --save-logits "$OUT/fp32.kld" --quiet >/dev/null
build/dashq quantize "$SHARED/models/gut6l/gut6l.bin" --method dashq --bits 3 --group 128 \
  --calib "$SHARED/data/gutenberg/calib/gutenberg_calib.txt" --nsamples 32 --seqlen 256 -o "$OUT/gut6l-w3" | tail -3
echo "== KL divergence of the written 3-bit checkpoint to the fp32 model"
build/dashq eval "$OUT/gut6l-w3" --kld "$OUT/fp32.kld" --quiet
echo "== a low-bit GGUF for llama.cpp: GPTQ on llama.cpp's Q4_K_M mixture (128 calibration windows)"
build/dashq quantize "$SHARED/models/gut6l/gut6l.bin" --method gptq --format gguf --type Q4_K_M \
  --calib "$SHARED/data/gutenberg/calib/gutenberg_calib.txt" --nsamples 128 --seqlen 256 -o "$OUT/gut6l-Q4_K_M.gguf" | tail -2
echo "== its KL divergence to the fp32 model (llama.cpp's own imatrix Q4_K_M: 0.00107)"
build/dashq eval "$OUT/gut6l-Q4_K_M.gguf" --ppl "$BOOK" --ctx 256 --llamacpp-compatible --kld "$OUT/fp32.kld" --quiet
echo "== the full-precision model as a GGUF file for llama.cpp (Q8_0)"
build/dashq convert "$SHARED/models/gut6l/gut6l.bin" -o "$OUT/gut6l-q8_0.gguf" --type Q8_0
echo "== zero-shot accuracy of the Q4_K_M file, scored as lm-evaluation-harness does (first 300 items; gut6l is at chance)"
build/dashq eval "$OUT/gut6l-Q4_K_M.gguf" --tasks hellaswag,arc_easy,piqa --limit 300 --data-dir "$SHARED/data" --quiet
