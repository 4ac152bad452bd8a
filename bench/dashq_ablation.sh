#!/usr/bin/env bash
# DASH-Q ablation: which solver choices move quality, against GPTQ, at 2-3
# bits with 2 and 128 calibration samples. Variants: reweighting rule (IRLS),
# dead-channel epsilon, number of starting scales, and a short-window regime
# (seqlen 32: fewer calibration tokens than the layer is wide, where GPTQ's
# full Hessian is rank-deficient as it is for real LLMs with two samples).
# Appends to results/dashq_ablation.csv; finished cells are skipped.
#
#   bench/dashq_ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
OUT=${OUT:-results/dashq_ablation.csv}
WORK=${WORK:-$(mktemp -d)}
build_dashq
start_results "model,variant,bits,group,nsamples,seqlen,seed,ppl,kld,same_top,quant_seconds"

variant_args() {
  case $1 in
    gptq) echo "--method gptq" ;;
    dashq) echo "--method dashq" ;;
    dashq-eps1e-6) echo "--method dashq --eps 1e-6" ;;
    dashq-eps1e-1) echo "--method dashq --eps 0.1" ;;
    dashq-huber0.25) echo "--method dashq --reweight huber --reweight-param 0.25" ;;
    dashq-power0.5) echo "--method dashq --reweight power --reweight-param 0.5" ;;
    dashq-starts21) echo "--method dashq --starts 21" ;;
  esac
}
run_cell() {  # model variant bits group nsamples seqlen seed
  grep -q "^$1,$2,$3,$4,$5,$6,$7," "$OUT" && return 0
  local model calib text
  read -r model calib text _ <<<"$(model_spec "$1")"
  local base="$WORK/$1.kld" out="$WORK/cell"
  [ -f "$base" ] || build/dashq eval "$model" --ppl "$text" --ctx 256 --save-logits "$base" --quiet >/dev/null
  local t0 t1 json
  t0=$(date +%s.%N)
  # shellcheck disable=SC2046
  build/dashq quantize "$model" $(variant_args "$2") --bits "$3" --group "$4" --calib "$calib" \
    --nsamples "$5" --seqlen "$6" --seed "$7" -o "$out" --quiet >/dev/null 2>&1
  t1=$(date +%s.%N)
  json=$(build/dashq eval "$out" --kld "$base" --json --quiet | head -1)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%s,%.4f,%.6f,%.5f,%.2f" % (sys.argv[2], r["perplexity"], r["kld"], r["same_top"], float(sys.argv[3])))' \
    "$json" "$1,$2,$3,$4,$5,$6,$7" "$(echo "$t1 - $t0" | bc)" >>"$OUT"
  rm -rf "$out"
}

for model in gut6l stories260K; do
  cfgs="3:128 2:32"; [ $model = stories260K ] && cfgs="3:64 2:32"
  for cfg in $cfgs; do
    IFS=: read -r bits group <<<"$cfg"
    for v in gptq dashq dashq-eps1e-6 dashq-eps1e-1 dashq-huber0.25 dashq-power0.5 dashq-starts21; do
      for seed in 0 1 2; do run_cell $model $v "$bits" "$group" 2 256 $seed; done
      run_cell $model $v "$bits" "$group" 128 256 0
    done
    for v in gptq dashq dashq-starts21; do
      for seed in 0 1 2; do run_cell $model $v "$bits" "$group" 2 32 $seed; done
    done
  done
done
echo "results in $OUT"
