#!/usr/bin/env bash
# OAC (output-adaptive curvature, issue #16) against the layer curvature, one
# variable per row: the same calibration windows, KLD to full precision,
# top-1 agreement and perplexity on held-out text, the quantization's wall
# time, its gradient pass and peak RSS; and the cost of a backward pass: the
# gradient pass's seconds over those of a forward-only perplexity run on the
# same number of windows of the same length.
#   bench/oac.sh [MODEL] [OUT.tsv]     MODEL from bench/models.sh (default smollm2-135m)
# Knobs: NSAMPLES [8], SEQLEN [512 for smollm2, 256 otherwise], CONFIGS ["3:128"]
# (bits:group), CHUNKS [24] evaluation windows, ROWS (a subset of the labels below).
# SmolLM2, 8 windows, one config: ~25 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
NAME=${1:-smollm2-135m}
OUT=${2:-results/oac_$NAME.tsv}
read -r model calib text _ <<<"$(model_spec "$NAME")"
NS=${NSAMPLES:-8}
SL=${SEQLEN:-$([ "$NAME" = smollm2-135m ] && echo 512 || echo 256)}
CONFIGS=${CONFIGS:-3:128}
CHUNKS=${CHUNKS:-24}
build_dashq
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build/dashq eval "$model" --ppl "$text" --ctx "$SL" --chunks "$CHUNKS" --save-logits "$work/base" --quiet >/dev/null

# the cost of the backward pass: forward-only scoring of NS windows of SL tokens
t0=$(date +%s.%N)
build/dashq eval "$model" --ppl "$calib" --ctx "$SL" --chunks "$NS" --quiet >/dev/null
t_fwd=$(echo "$(date +%s.%N) - $t0" | bc)

printf 'model\tbits\tgroup\tnsamples\trow\toptions\tkld\tsame_top\tppl\tquant_s\tgradient_pass_s\tbackward_over_forward\tpeak_mb\n' >"$OUT.tmp"
row() { # LABEL OPTIONS...
  local label=$1
  shift
  if [ -n "${ROWS:-}" ] && ! grep -qw -- "$label" <<<"$ROWS"; then return 0; fi
  local log="$work/log" js grad ratio
  /usr/bin/time -f 'peak_kb %M wall %e' build/dashq quantize "$model" --bits "$bits" --group "$group" --calib "$calib" \
    --nsamples "$NS" --seqlen "$SL" --seed 0 "$@" -o "$work/q" >"$log" 2>&1
  js=$(build/dashq eval "$work/q" --ppl "$text" --ctx "$SL" --chunks "$CHUNKS" --kld "$work/base" --json --quiet | head -1)
  grad=$(sed -n 's/^gradient pass: \([0-9.]*\) s.*/\1/p' "$log")
  ratio=$([ -n "$grad" ] && echo "scale=2; $grad / $t_fwd" | bc || echo "")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$NAME" "$bits" "$group" "$NS" "$label" "$*" \
    "$(sed 's/.*"kld": *\([0-9.]*\).*/\1/' <<<"$js")" "$(sed 's/.*"same_top": *\([0-9.]*\).*/\1/' <<<"$js")" \
    "$(sed 's/.*"perplexity": *\([0-9.]*\).*/\1/' <<<"$js")" "$(sed -n 's/^peak_kb [0-9]* wall \([0-9.]*\)/\1/p' "$log")" \
    "${grad:-}" "$ratio" "$(( $(sed -n 's/^peak_kb \([0-9]*\).*/\1/p' "$log") / 1024 ))" | tee -a "$OUT.tmp"
  rm -rf "$work/q"
}
for cfg in $CONFIGS; do
  bits=${cfg%%:*} group=${cfg##*:}
  row gptq --method gptq
  row oac --method oac
  row oac-token --method oac --curvature oac-token
  row oac-damp0.1 --method oac --percdamp 0.1
  row oac-token-damp0.1 --method oac --curvature oac-token --percdamp 0.1
  row gptq-act-order-mse --method gptq --act-order --mse
  row oac-act-order-mse --method oac --act-order --mse
  row oac-token-act-order-mse --method oac --curvature oac-token --act-order --mse
  row dashq --method dashq
  row dashq-oac --method dashq --curvature oac
  row dashq-oac-token --method dashq --curvature oac-token
done
mv "$OUT.tmp" "$OUT"
echo "forward-only scoring of $NS x $SL tokens: $t_fwd s (the denominator of backward_over_forward)"
