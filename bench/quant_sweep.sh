#!/usr/bin/env bash
# Quality sweep: methods x bit widths x group sizes x calibration sizes x seeds
# on the bundled models, scored by KL divergence to the full-precision model
# (llama.cpp protocol: 256-token windows, second half scored) and perplexity
# on held-out text. Appends to results/quant_sweep.csv and skips finished
# cells, so it can be interrupted and resumed.
#
#   bench/quant_sweep.sh [MODEL...]       (default: gut6l stories260K)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
OUT=${OUT:-results/quant_sweep.csv}
WORK=${WORK:-$(mktemp -d)}
build_dashq
start_results "model,method,bits,group,nsamples,seed,ppl,kld,same_top,quant_seconds"

done_cell() { grep -q "^$1,$2,$3,$4,$5,$6," "$OUT"; }

for name in "${@:-gut6l stories260K}"; do
  for name1 in $name; do
  read -r model calib text <<<"$(model_spec "$name1")"
  base="$WORK/$name1.kld"
  [ -f "$base" ] || build/dashq eval "$model" --ppl "$text" --ctx 256 --save-logits "$base" --quiet >/dev/null
  for cfg in 4:128 3:128 3:64 2:32; do
    IFS=: read -r bits group <<<"$cfg"
    for method in rtn gptq dashq; do
      for ns in 2 8 32 128; do
        seeds="0 1 2"; [ "$ns" -ge 32 ] && seeds=0
        [ $method = rtn ] && { [ "$ns" = 128 ] || continue; seeds=0; }  # RTN ignores the data
        for seed in $seeds; do
          done_cell "$name1" $method "$bits" "$group" "$ns" "$seed" && continue
          out="$WORK/$name1-$method-$bits-$group-$ns-$seed"
          t0=$(date +%s.%N)
          build/dashq quantize "$model" --method $method --bits "$bits" --group "$group" --calib "$calib" \
            --nsamples "$ns" --seqlen 256 --seed "$seed" -o "$out" --quiet >/dev/null 2>&1
          t1=$(date +%s.%N)
          json=$(build/dashq eval "$out" --kld "$base" --json --quiet | head -1)
          python3 - "$json" "$name1,$method,$bits,$group,$ns,$seed" "$(echo "$t1 - $t0" | bc)" >>"$OUT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{sys.argv[2]},{r['perplexity']:.4f},{r['kld']:.6f},{r['same_top']:.5f},{float(sys.argv[3]):.2f}")
PY
          rm -rf "$out"
        done
      done
    done
  done
  done
done
echo "results in $OUT"
