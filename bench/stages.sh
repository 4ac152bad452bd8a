#!/usr/bin/env bash
# Time and peak RSS of each stage of the main job on a model (issue #12):
# the full-precision evaluation (perplexity and saving the base distributions),
# each method's quantization split into its stages (calibration forward passes,
# statistics, OAC's gradient pass, solve, total), the KLD evaluation of its
# output, and zero-shot scoring. Wall seconds and peak RSS from /usr/bin/time;
# stage seconds from the quantize report. Run it on a quiet machine (2 cores:
# nothing else running, OpenMP spin-waits make shared timings meaningless).
#
#   bench/stages.sh [MODEL]        (default smollm2-135m; rows to results/MODEL_stages.tsv)
#
# Knobs: NSAMPLES [32] windows of CTX [512] tokens for calibration, CHUNKS [40]
# evaluation windows, LIMIT [100] ARC-Easy items, JOBS ["rtn:3:128 gptq:3:128
# dashq:3:128 oac:3:128 gptq:Q4_K_M dashq:Q4_K_M"] (METHOD:BITS:GROUP or METHOD:GGUF_TYPE).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
NAME=${1:-smollm2-135m}
NS=${NSAMPLES:-32}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-40}
LIMIT=${LIMIT:-100}
JOBS=${JOBS:-rtn:3:128 gptq:3:128 dashq:3:128 oac:3:128 gptq:Q4_K_M dashq:Q4_K_M}
OUT=${OUT:-results/${NAME}_stages.tsv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
build_dashq
read -r model calib text _ <<<"$(model_spec "$NAME")"
printf "stage\tjob\twall_s\tpeak_mb\tforward_s\tstats_s\tgradients_s\tsolve_s\ttotal_s\tnote\n" >"$OUT.tmp"

# timed LABEL JOB CMD...: one row; the command's stdout kept in $WORK/out
timed() {
  local label=$1 job=$2
  shift 2
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" >"$WORK/out"
  read -r wall kb <"$WORK/t"
  local fw="" st="" gr="" so="" to="" note=""
  if [ "$label" = quantize ]; then
    read -r fw st so to < <(sed -n 's/^time: forward \([0-9.]*\) s, statistics \([0-9.]*\) s, solve \([0-9.]*\) s, total \([0-9.]*\) s$/\1 \2 \3 \4/p' "$WORK/out")
    gr=$(sed -n 's/^gradient pass: \([0-9.]*\) s.*/\1/p' "$WORK/out")
    note="$NS x $CTX tokens"
  fi
  [ "$label" = eval ] && note=$(grep -o '[0-9]* tokens scored' "$WORK/out" | head -1)
  [ "$label" = zero-shot ] && note=$(grep -o '\[[0-9]* tokens, [0-9.]* s, [0-9]* tok/s\]' "$WORK/out" | tr -d '[]')
  printf "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n" "$label" "$job" "$wall" $((kb / 1024)) "$fw" "$st" "${gr:-}" "$so" "$to" \
    "$note" >>"$OUT.tmp"
  echo "$label $job: ${wall} s, $((kb / 1024)) MB" >&2
}

ev=(--ppl "$text" --ctx "$CTX" --chunks "$CHUNKS" --llamacpp-compatible --quiet)
timed eval fp build/dashq eval "$model" "${ev[@]}" --save-logits "$WORK/base.kld"
timed zero-shot fp build/dashq eval "$model" --tasks arc_easy --limit "$LIMIT" --data-dir "$SHARED/data" --quiet
for job in $JOBS; do
  IFS=: read -r method a b <<<"$job"
  if [ -z "$b" ]; then
    args=(--format gguf --type "$a") out="$WORK/q.gguf"
  else
    args=(--bits "$a" --group "$b") out="$WORK/q"
  fi
  timed quantize "$job" build/dashq quantize "$model" --method "$method" "${args[@]}" --calib "$calib" \
    --nsamples "$NS" --seqlen "$CTX" -o "$out" --quiet
  timed eval "$job" build/dashq eval "$out" "${ev[@]}" --kld "$WORK/base.kld"
  rm -rf "$out"
done
mv "$OUT.tmp" "$OUT"
column -t -s $'\t' "$OUT"
