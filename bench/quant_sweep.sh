#!/usr/bin/env bash
# Quality sweep: methods x bit widths x group sizes x calibration sizes x seeds,
# scored by KL divergence to the full-precision model (llama.cpp protocol:
# CTX-token windows, second half scored), top-1 agreement and perplexity on
# held-out text. Appends to OUT (default results/quant_sweep.csv) and skips
# finished cells, so it can be interrupted and resumed.
#
#   bench/quant_sweep.sh [MODEL...]       (default: gut6l stories260K)
#
# Knobs (environment), defaults in brackets:
#   CONFIGS  bits:group pairs         ["4:128 3:128 3:64 2:32"]
#   SAMPLES  calibration window counts ["2 8 32 128"]; 3 seeds below 32
#   METHODS  ["rtn gptq dashq"]; "gptq+act-order+mse" adds those flags (its own rows, method column as
#            written), "oac+curvature=oac-token+percdamp=0.1" flags with values
#   CTX      window length, calibration and evaluation [256]
#   CHUNKS   evaluate only the first CHUNKS windows [all]
#   TASKS    zero-shot tasks for the full-precision model and for every cell
#            with the largest sample count, seed 0 [none]; LIMIT items each
#            [100], rows to ${OUT%.csv}_zeroshot.jsonl
# A new CSV also records each quantization's peak RSS (quant_peak_mb), its
# CPU seconds (user + system: unlike wall time, not inflated by other jobs on
# the machine) and the second text's scores. THREADS [all] sets OMP_NUM_THREADS.
#
#   OUT=results/smollm2_sweep.csv CTX=512 CHUNKS=40 CONFIGS="4:128 3:128 3:64 2:64 2:32" \
#     TASKS=piqa,arc_easy,arc_challenge,hellaswag,winogrande,boolq,lambada LIMIT=100 \
#     bench/quant_sweep.sh smollm2-135m
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
OUT=${OUT:-results/quant_sweep.csv}
WORK=${WORK:-$(mktemp -d)}
CONFIGS=${CONFIGS:-4:128 3:128 3:64 2:32}
SAMPLES=${SAMPLES:-2 8 32 128}
METHODS=${METHODS:-rtn gptq dashq}
CTX=${CTX:-256}
LIMIT=${LIMIT:-100}
ZS=${OUT%.csv}_zeroshot.jsonl
ev_chunks=()
[ -n "${CHUNKS:-}" ] && ev_chunks=(--chunks "$CHUNKS")
build_dashq
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
start_results "model,method,bits,group,nsamples,seed,ppl,kld,same_top,quant_seconds,quant_peak_mb,quant_cpu_seconds,ppl_b,kld_b,same_top_b"
schema=0 # older files lack the later columns
head -1 "$OUT" | grep -q quant_peak_mb && schema=1
head -1 "$OUT" | grep -q quant_cpu_seconds && schema=2
max_ns=$(tr ' ' '\n' <<<"$SAMPLES" | sort -n | tail -1)

done_cell() { grep -q "^$1,$2,$3,$4,$5,$6," "$OUT"; }

for name in "${@:-gut6l stories260K}"; do
  for name1 in $name; do
  read -r model calib text text_b <<<"$(model_spec "$name1")"
  base="$WORK/$name1-$CTX-${CHUNKS:-all}.kld"
  [ -f "$base" ] || build/dashq eval "$model" --ppl "$text" --ctx "$CTX" "${ev_chunks[@]}" --save-logits "$base" --quiet >/dev/null
  base_b="$WORK/$name1-$CTX-${CHUNKS:-all}-b.kld"
  [ -z "${text_b:-}" ] || [ -f "$base_b" ] || build/dashq eval "$model" --ppl "$text_b" --ctx "$CTX" "${ev_chunks[@]}" --save-logits "$base_b" --quiet >/dev/null
  zeroshot "$model" "$name1,fp" "$ZS"
  for cfg in $CONFIGS; do
    IFS=: read -r bits group <<<"$cfg"
    for method in $METHODS; do
      for ns in $SAMPLES; do
        seeds="0 1 2"; [ "$ns" -ge 32 ] && seeds=0
        [ "${method%%+*}" = rtn ] && { [ "$ns" = "$max_ns" ] || continue; seeds=0; }  # RTN ignores the data
        for seed in $seeds; do
          done_cell "$name1" $method "$bits" "$group" "$ns" "$seed" && continue
          out="$WORK/$name1-$method-$bits-$group-$ns-$seed"
          t0=$(date +%s.%N)
          # a METHODS entry "gptq+act-order+mse" is gptq with those flags, a row of its own in the CSV and report
          method_args "$method"
          /usr/bin/time -f "%M %U %S" -o "$WORK/rss" build/dashq quantize "$model" "${margs[@]}" --bits "$bits" \
            --group "$group" --calib "$calib" --nsamples "$ns" --seqlen "$CTX" --seed "$seed" -o "$out" --quiet >/dev/null 2>&1
          t1=$(date +%s.%N)
          json=$(build/dashq eval "$out" --ppl "$text" --ctx "$CTX" "${ev_chunks[@]}" --kld "$base" --json --quiet | head -1)
          json_b='{}'
          [ -n "${text_b:-}" ] && json_b=$(build/dashq eval "$out" --ppl "$text_b" --ctx "$CTX" "${ev_chunks[@]}" --kld "$base_b" --json --quiet | head -1)
          python3 - "$json" "$name1,$method,$bits,$group,$ns,$seed" "$(echo "$t1 - $t0" | bc)" "$(tail -1 "$WORK/rss")" "$schema" "$json_b" >>"$OUT" <<'PY'
import json, sys
r, rb = json.loads(sys.argv[1]), json.loads(sys.argv[6])
rss_kb, user, system = sys.argv[4].split()
row = f"{sys.argv[2]},{r['perplexity']:.4f},{r['kld']:.6f},{r['same_top']:.5f},{float(sys.argv[3]):.2f}"
if int(sys.argv[5]) >= 1: row += f",{int(rss_kb) // 1024}"
if int(sys.argv[5]) >= 2:
    row += f",{float(user) + float(system):.2f}"
    row += f",{rb['perplexity']:.4f},{rb['kld']:.6f},{rb['same_top']:.5f}" if rb else ",,,"
print(row)
PY
          [ "$ns" = "$max_ns" ] && [ "$seed" = 0 ] && zeroshot "$out" "$name1,$method,$bits,$group,$ns" "$ZS"
          rm -rf "$out"
        done
      done
    done
  done
  done
done
echo "results in $OUT"
