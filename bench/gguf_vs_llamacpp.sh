#!/usr/bin/env bash
# Our RTN, GPTQ and DASH-Q GGUF files against llama.cpp's own llama-quantize,
# with and without an imatrix computed from the same calibration text, in the
# same llama.cpp types (same per-tensor mixtures, so the same file size).
# Quality: perplexity and KL divergence to the F32 model on held-out text
# (dashq eval --llamacpp-compatible: llama-perplexity's protocol, 256-token
# windows), plus llama-perplexity's own PPL on every file as the check that
# llama.cpp computes what we measured.
#
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bench/gguf_vs_llamacpp.sh [MODEL] [TYPES...]
#
# MODEL is a name from bench/models.sh (default gut6l). NSAMPLES (default
# 128) windows of CTX (default 256) tokens calibrate both us and
# llama-imatrix; evaluation uses CTX-token windows too, the first CHUNKS of
# them (default: all; LLAMA_CHUNKS for llama-perplexity's own check, which
# may use fewer windows: ppl_gap_pct then compares llama-perplexity with our
# perplexity on those same LLAMA_CHUNKS windows). METHODS (default "rtn gptq
# dashq") are our quantizers, each a row "dashq-METHOD". Rows go to
# results/gguf_vs_llamacpp.csv (OUT=...); a finished cell is not rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
B=${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to a llama.cpp build/bin folder}
for tool in llama-quantize llama-imatrix llama-perplexity; do # a missing one would end the run mid-way
  [ -x "$B/$tool" ] || { echo "bench/gguf_vs_llamacpp.sh: no $B/$tool (cmake --build build --target $tool)" >&2; exit 2; }
done
NAME=${1:-gut6l}
shift || true
TYPES=${*:-Q2_K Q3_K_S Q3_K_M Q4_0 Q4_1 Q4_K_M}
METHODS=${METHODS:-rtn gptq dashq} # entries as in bench/quant_sweep.sh: "oac+curvature=oac-token"
NS=${NSAMPLES:-128}
CTX=${CTX:-256}
CHUNKS=${CHUNKS:-}
LLAMA_CHUNKS=${LLAMA_CHUNKS:-$CHUNKS} # llama-perplexity's check may use fewer windows
ev_chunks=() ll_chunks=()
[ -n "$CHUNKS" ] && ev_chunks=(--chunks "$CHUNKS")
[ -n "$LLAMA_CHUNKS" ] && ll_chunks=(--chunks "$LLAMA_CHUNKS")
OUT=${OUT:-results/gguf_vs_llamacpp.csv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
read -r model calib text _ <<<"$(model_spec "$NAME")"
build_dashq
start_results "model,type,quantizer,bytes,bpw,ppl,kld,same_top,llama_ppl,ppl_gap_pct"

build/dashq convert "$model" -o "$WORK/f32.gguf" --type F32 >/dev/null
params=$(build/dashq info "$model" | awk '/^params:/ {print $2}')
build/dashq eval "$WORK/f32.gguf" --ppl "$text" --ctx "$CTX" "${ev_chunks[@]}" --llamacpp-compatible --save-logits "$WORK/base.kld" --quiet >/dev/null
"$B/llama-imatrix" -m "$WORK/f32.gguf" -f "$calib" -o "$WORK/imatrix.dat" -c "$CTX" -b "$CTX" --chunks "$NS" -t 2 --no-ppl \
  >"$WORK/imatrix.log" 2>&1 || { cat "$WORK/imatrix.log"; exit 1; }

row() { # TYPE QUANTIZER FILE
  local json json_ll lppl
  json=$(build/dashq eval "$3" --ppl "$text" --ctx "$CTX" "${ev_chunks[@]}" --llamacpp-compatible --kld "$WORK/base.kld" --json --quiet | head -1)
  json_ll=$json # our perplexity on llama-perplexity's windows, for the gap
  [ "$LLAMA_CHUNKS" = "$CHUNKS" ] ||
    json_ll=$(build/dashq eval "$3" --ppl "$text" --ctx "$CTX" "${ll_chunks[@]}" --llamacpp-compatible --json --quiet | head -1)
  lppl=$("$B/llama-perplexity" -m "$3" -f "$text" -c "$CTX" -b "$CTX" "${ll_chunks[@]}" -t 2 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
  python3 - "$json" "$NAME,$1,$2" "$(stat -c %s "$3")" "$params" "${lppl:-nan}" "$json_ll" >>"$OUT" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); size, params, lppl = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
gap = 100 * (lppl - json.loads(sys.argv[6])['perplexity']) / json.loads(sys.argv[6])['perplexity']
print(f"{sys.argv[2]},{size},{8 * size / params:.3f},{r['perplexity']:.4f},{r['kld']:.6f},{r['same_top']:.5f},{lppl:.4f},{gap:+.3f}")
PY
}
done_cell() { grep -q "^$NAME,$1,$2," "$OUT"; }

for type in $TYPES; do
  if ! done_cell "$type" llama.cpp; then
    "$B/llama-quantize" "$WORK/f32.gguf" "$WORK/q.gguf" "$type" 2 >/dev/null 2>&1
    row "$type" llama.cpp "$WORK/q.gguf"
  fi
  if ! done_cell "$type" llama.cpp+imatrix; then
    "$B/llama-quantize" --imatrix "$WORK/imatrix.dat" "$WORK/f32.gguf" "$WORK/q.gguf" "$type" 2 >/dev/null 2>&1
    row "$type" llama.cpp+imatrix "$WORK/q.gguf"
  fi
  for method in $METHODS; do
    done_cell "$type" "dashq-$method" && continue
    method_args "$method"
    build/dashq quantize "$model" "${margs[@]}" --calib "$calib" --nsamples "$NS" --seqlen "$CTX" \
      --format gguf --type "$type" -o "$WORK/q.gguf" --quiet >/dev/null
    row "$type" "dashq-$method" "$WORK/q.gguf"
  done
done
column -s, -t "$OUT"
