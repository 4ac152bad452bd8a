#!/usr/bin/env bash
# Is a method's lead on SmolLM2 real, or the Q4_1 grid its reference weights
# already sit on? The only real model we can fetch is a Q4_1 GGUF (every 32
# weights d*q + m, q in 0..15): a group fit with a real-valued zero (DASH-Q)
# can land on that grid where its groups align with the blocks. This runs the
# same cells on two references: the Q4_1 weights as they are, and the same
# weights with the rounding undone by a seeded uniform dither of one step
# (bench/dither_reference.py), which no quantizer can land on. KLD to each
# cell's own reference, top-1 agreement and perplexity on WikiText-2 test
# (CTX-token windows, second half scored, first CHUNKS windows).
#   bench/grid_confound.sh [OUT.tsv]   (default results/smollm2_grid_confound.tsv)
# Knobs: CELLS ["rtn:4:128 gptq:4:128 dashq:4:128 rtn:3:128 gptq:3:128 dashq:3:128 rtn:4:32 dashq:4:32"]
# (method:bits:group), NSAMPLES [8], CTX [512], CHUNKS [24], SEED [1] (the dither's).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
OUT=${1:-results/smollm2_grid_confound.tsv}
CELLS=${CELLS:-rtn:4:128 gptq:4:128 dashq:4:128 rtn:3:128 gptq:3:128 dashq:3:128 rtn:4:32 dashq:4:32}
NS=${NSAMPLES:-8}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-24}
SEED=${SEED:-1}
read -r q41 calib text _ <<<"$(model_spec smollm2-135m)"
build_dashq
dith=$(smollm2_dither "$SEED")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ev() { build/dashq eval "$1" --ppl "$text" --ctx "$CTX" --chunks "$CHUNKS" "${@:2}" --json --quiet | head -1; }
field() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(*[r.get(k, '') for k in sys.argv[2:]], sep='\t')" "$@"; }
[ -s "$OUT" ] || printf 'reference\tmethod\tbits\tgroup\tnsamples\tkld\tsame_top\tppl\tquant_cpu_s\n' >"$OUT"
for ref in q4_1 dither$SEED; do
  model=$q41
  [ "$ref" = q4_1 ] || model=$dith
  ev "$model" --save-logits "$work/$ref.base" >"$work/$ref.json"
  grep -q "^$ref	fp	" "$OUT" || printf '%s\tfp\t\t\t\t\t\t%s\t\n' "$ref" "$(field "$(cat "$work/$ref.json")" perplexity)" >>"$OUT"
done
# how far the dither moves the model: KLD of the dithered reference to the Q4_1 one
grep -q "^dither$SEED	vs-q4_1	" "$OUT" ||
  printf 'dither%s\tvs-q4_1\t\t\t\t%s\t\n' "$SEED" "$(field "$(ev "$dith" --kld "$work/q4_1.base")" kld same_top perplexity)" >>"$OUT"
for ref in q4_1 dither$SEED; do
  model=$q41
  [ "$ref" = q4_1 ] || model=$dith
  for cell in $CELLS; do
    IFS=: read -r method bits group <<<"$cell"
    grep -q "^$ref	$method	$bits	$group	$NS	" "$OUT" && continue
    /usr/bin/time -f "%U %S" -o "$work/t" build/dashq quantize "$model" --method "$method" --bits "$bits" --group "$group" \
      --calib "$calib" --nsamples "$NS" --seqlen "$CTX" -o "$work/q" --quiet >/dev/null
    cpu=$(awk '{print $1 + $2}' "$work/t")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ref" "$method" "$bits" "$group" "$NS" \
      "$(field "$(ev "$work/q" --kld "$work/$ref.base")" kld same_top perplexity)" "$cpu" >>"$OUT"
    rm -rf "$work/q"
  done
done
column -t -s $'\t' "$OUT"
