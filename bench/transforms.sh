#!/usr/bin/env bash
# Transforms before quantization (issue #17): each quantizer with no
# transform, a random Hadamard rotation (QuaRot-style R1 + R2), SmoothQuant's
# closed-form smoothing and both, on the same calibration windows; KLD to full
# precision, top-1 agreement and perplexity on held-out text, quantization
# wall time, the transform's own seconds and peak RSS.
#   bench/transforms.sh [MODEL] [OUT.tsv]   MODEL from bench/models.sh (default smollm2-135m)
# Knobs: NSAMPLES [8], SEQLEN [512 for smollm2, 256 otherwise], CONFIGS ["3:128 3:-1"]
# (bits:group), METHODS ["gptq dashq"; "oac+curvature=oac-token" adds flags, see bench/models.sh], TRANSFORMS ["none:none hadamard:none none:closed
# hadamard:closed"] (rotate:smooth), CHUNKS [24] evaluation windows, ACT_BITS [0] (8: W·A8,
# per-token activations in calibration and evaluation), APPEND=1 adds rows to OUT.
# TASKS (e.g. piqa,arc_easy,...; LIMIT items each [100]) scores the full-precision model and
# every row's file zero-shot, lines to ${OUT%.tsv}_zeroshot.jsonl tagged
# "MODEL,bits,group,act_bits,nsamples,method,rotate,smooth".
# The HeRo-Q rows' own time is the transform_s column (hero: the learning step); rot_objective
# is what a learned rotation reached on its own objective (hero: RTN error ratio to the start;
# hero-loss / hero-kl: the quantized model's cross-entropy / KL on the calibration windows, start -> kept).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
NAME=${1:-smollm2-135m}
OUT=${2:-results/transforms_$NAME.tsv}
read -r model calib text _ <<<"$(model_spec "$NAME")"
NS=${NSAMPLES:-8}
SL=${SEQLEN:-$([ "$NAME" = smollm2-135m ] && echo 512 || echo 256)}
CONFIGS=${CONFIGS:-3:128 3:-1}
METHODS=${METHODS:-gptq dashq}
TRANSFORMS=${TRANSFORMS:-none:none hadamard:none none:closed hadamard:closed}
CHUNKS=${CHUNKS:-24}
build_dashq
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build/dashq eval "$model" --ppl "$text" --ctx "$SL" --chunks "$CHUNKS" --save-logits "$work/base" --quiet >/dev/null
ZS=${OUT%.tsv}_zeroshot.jsonl
zeroshot "$model" "$NAME,fp" "$ZS"

ACT=${ACT_BITS:-0}
header='model\tbits\tgroup\tact_bits\tnsamples\tmethod\trotate\tsmooth\tkld\tsame_top\tppl\tquant_s\ttransform_s\thero_err_ratio\thero_rho\tpeak_mb\trot_objective'
if [ -n "${APPEND:-}" ] && [ -s "$OUT" ]; then
  # rows of a file from before the rot_objective column get it empty
  awk -v h="$(printf "$header")" -F'\t' 'BEGIN{OFS="\t"} NR==1{print h; next} {if (NF < 17) $17=""; print}' "$OUT" >"$OUT.tmp"
else printf "$header\n" >"$OUT.tmp"; fi
for cfg in $CONFIGS; do
  bits=${cfg%%:*} group=${cfg##*:}
  for method in $METHODS; do
    for tr in $TRANSFORMS; do
      rot=${tr%%:*} smo=${tr##*:}
      log="$work/log"
      method_args "$method"
      /usr/bin/time -f 'peak_kb %M wall %e' build/dashq quantize "$model" "${margs[@]}" --bits "$bits" \
        --group "$group" --calib "$calib" --nsamples "$NS" --seqlen "$SL" --seed 0 --rotate "$rot" --smooth "$smo" --act-bits "$ACT" \
        -o "$work/q" >"$log" 2>&1 || { tail -3 "$log" >&2; exit 1; }
      js=$(build/dashq eval "$work/q" --ppl "$text" --ctx "$SL" --chunks "$CHUNKS" --kld "$work/base" --json --quiet | head -1)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$NAME" "$bits" "$group" "$ACT" "$NS" "$method" "$rot" "$smo" \
        "$(sed 's/.*"kld": *\([0-9.e-]*\).*/\1/' <<<"$js")" "$(sed 's/.*"same_top": *\([0-9.]*\).*/\1/' <<<"$js")" \
        "$(sed 's/.*"perplexity": *\([0-9.]*\).*/\1/' <<<"$js")" "$(sed -n 's/^peak_kb [0-9]* wall \([0-9.]*\)/\1/p' "$log")" \
        "$(sed -n 's/^transform: .*: \([0-9.]*\) s.*/\1/p' "$log")" \
        "$(sed -n 's/^hero: RTN error in the Hessian norm x\([0-9.]*\) .*/\1/p' "$log")" \
        "$(sed -n 's/^hero: .* Hessians \([0-9.]* -> [0-9.]*\) .*/\1/p' "$log")" \
        "$(( $(sed -n 's/^peak_kb \([0-9]*\).*/\1/p' "$log") / 1024 ))" \
        "$(sed -n -e 's/^hero rotation: RTN error in the Hessian norm x\([0-9.]*\) .*/x\1/p' \
                  -e 's/^hero-[a-z]* rotation: .* windows \([0-9.]* -> [0-9.]*\)$/\1/p' "$log")" | tee -a "$OUT.tmp"
      zeroshot "$work/q" "$NAME,$bits,$group,$ACT,$NS,$method,$rot,$smo" "$ZS"
      rm -rf "$work/q"
    done
  done
done
mv "$OUT.tmp" "$OUT"
