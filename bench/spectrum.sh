#!/usr/bin/env bash
# The curvature each quantizer sees, per layer type, under each transform
# (issue #17: HeRo-Q aims at the largest eigenvalues of the effective Hessian
# T⁻¹HT⁻ᵀ): quantize --spectrum prints, per linear, λ_max, λ_max/mean (scale-
# free: a plain rescale cannot move it) and the 1%-damped condition number of
# the H it was solved with; this averages them (geometric means) per layer
# type. Rotations are similarities of H: they cannot move λ_max/mean of a
# block's first inputs, only what later layers see; smoothings can.
#   bench/spectrum.sh [MODEL] [OUT.tsv]   (default smollm2-135m)
# Knobs: NSAMPLES [8], SEQLEN [512 for smollm2, 256 otherwise], BITS [3], GROUP [128],
# TRANSFORMS ["none:none hadamard:none hero:none none:closed none:hero hero:hero"].
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
NAME=${1:-smollm2-135m}
OUT=${2:-results/spectrum_$NAME.tsv}
read -r model calib _ <<<"$(model_spec "$NAME")"
NS=${NSAMPLES:-8}
SL=${SEQLEN:-$([ "$NAME" = smollm2-135m ] && echo 512 || echo 256)}
TRANSFORMS=${TRANSFORMS:-none:none hadamard:none hero:none none:closed none:hero hero:hero}
build_dashq
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'model\tbits\tgroup\trotate\tsmooth\tlayer_type\tn\tlmax_over_mean\tcond\n' >"$OUT.tmp"
for tr in $TRANSFORMS; do
  rot=${tr%%:*} smo=${tr##*:}
  build/dashq quantize "$model" --method gptq --bits "${BITS:-3}" --group "${GROUP:-128}" --calib "$calib" \
    --nsamples "$NS" --seqlen "$SL" --seed 0 --rotate "$rot" --smooth "$smo" --spectrum -o "$work/q" --quiet >"$work/log"
  awk -v m="$NAME" -v b="${BITS:-3}" -v g="${GROUP:-128}" -v r="$rot" -v s="$smo" '
    $1 ~ /^model\.layers\./ && NF >= 6 {
      t = $1; sub(/^model\.layers\.[0-9]+\./, "", t)
      if (t ~ /q_proj|k_proj|v_proj/) t = "q/k/v"; else if (t ~ /gate_proj|up_proj/) t = "gate/up"
      else if (t ~ /o_proj/) t = "o"; else if (t ~ /down_proj/) t = "down"
      n[t]++; lr[t] += log($5); lc[t] += log($6) }
    END { for (t in n) printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.2f\t%.4g\n", m, b, g, r, s, t, n[t], exp(lr[t] / n[t]), exp(lc[t] / n[t]) }
  ' "$work/log" | sort -t$'\t' -k6 | tee -a "$OUT.tmp"
  rm -rf "$work/q"
done
mv "$OUT.tmp" "$OUT"
