#!/usr/bin/env bash
# Zero-shot on the full task sets (issue #12: full precision and the best 2-bit row), one task at a time so that
# an interrupted run keeps what it finished (each task's summary and items stay in CACHE), then every finished
# task's line, tagged {"cell": "MODEL,LABEL"}, into OUT. About 95 minutes per cell for the seven sets on 2 cores.
#
#   bench/zeroshot_full.sh [MODEL] [CELL...]    default smollm2-135m, cells "fp dashq:2:32:128"
#
# A CELL is fp or METHOD:BITS:GROUP:NSAMPLES (quantized once into CACHE: CTX-token windows of the model's
# calibration text, seed 0, as bench/quant_sweep.sh). Knobs: TASKS [all seven, fastest first], CTX [512],
# CACHE [~/.cache/dashq/fullzs], OUT [results/smollm2_zeroshot_full.jsonl for smollm2-135m], LIMITS ["": full
# sets; "hellaswag=3000" scores that task's first 3000 items, cached apart from a full run's, "n" says so].
# Each quantized cell is also set against fp item by item (bench/zeroshot_paired.sh) into OUT's _paired.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
NAME=${1:-smollm2-135m}
shift || true
CELLS=${*:-fp dashq:2:32:128}
TASKS=${TASKS:-winogrande arc_challenge arc_easy piqa lambada boolq hellaswag}
CTX=${CTX:-512}
CACHE=${CACHE:-$HOME/.cache/dashq/fullzs}
OUT=${OUT:-results/${NAME%%-135m}_zeroshot_full.jsonl}
LIMITS=${LIMITS:-}
limit_of() { local kv; for kv in $LIMITS; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done; return 0; }
read -r model calib _ <<<"$(model_spec "$NAME")"
build_dashq
mkdir -p "$CACHE"
for cell in $CELLS; do
  label=${cell//:/-}
  file=$model
  if [ "$cell" != fp ]; then
    IFS=: read -r method bits group ns <<<"$cell"
    file=$CACHE/$NAME-$label
    [ -d "$file" ] || build/dashq quantize "$model" --method "$method" --bits "$bits" --group "$group" \
      --calib "$calib" --nsamples "$ns" --seqlen "$CTX" --seed 0 -o "$file" --quiet >/dev/null
  fi
  for t in $TASKS; do
    lim=$(limit_of "$t")
    sum=$CACHE/$label-$t${lim:+-first$lim}.json
    [ -s "$sum" ] && continue
    build/dashq eval "$file" --tasks "$t" --data-dir "$SHARED/data" --json --quiet ${lim:+--limit $lim} \
      --items "$CACHE/$label-$t${lim:+-first$lim}.items.jsonl" >"$sum.tmp"
    mv "$sum.tmp" "$sum"
  done
done
start_results
: >"$OUT.tmp"
for cell in $CELLS; do
  label=${cell//:/-}
  for t in $TASKS; do
    lim=$(limit_of "$t")
    sum=$CACHE/$label-$t${lim:+-first$lim}.json
    [ -s "$sum" ] && sed "s/^{/{\"cell\": \"$NAME,$label\", /" "$sum" >>"$OUT.tmp"
  done
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
# each quantized cell against full precision on the same items (bench/zeroshot_paired.sh)
PAIRED=${OUT%.jsonl}_paired.tsv
: >"$PAIRED.tmp"
for cell in $CELLS; do
  [ "$cell" = fp ] && continue
  label=${cell//:/-}
  for t in $TASKS; do
    lim=$(limit_of "$t")
    a=$CACHE/fp-$t${lim:+-first$lim}.items.jsonl b=$CACHE/$label-$t${lim:+-first$lim}.items.jsonl
    [ -s "$a" ] && [ -s "$b" ] || continue
    bench/zeroshot_paired.sh "$a" "$b" | sed "1{/^task/d}; s/^/$NAME,$label\t/" >>"$PAIRED.tmp"
  done
done
if [ -s "$PAIRED.tmp" ]; then
  { printf 'cell\ttask\tmetric\titems\tfp\tquantized\tdiff\tse_diff\n'; cat "$PAIRED.tmp"; } >"$PAIRED"
  cat "$PAIRED"
fi
rm -f "$PAIRED.tmp"
