#!/usr/bin/env bash
# KLD vs bits per weight of every quantizer in results/gguf_vs_llamacpp.csv
# (one line per quantizer, the six llama.cpp types as points), as an SVG.
#   bench/plot_gguf.sh [CSV] [OUT.svg]      (needs gnuplot: gnuplot-nox)
set -euo pipefail
cd "$(dirname "$0")/.."
CSV=${1:-results/gguf_vs_llamacpp.csv}
OUT=${2:-results/gguf_vs_llamacpp.svg}
DAT=$(mktemp)
trap 'rm -f "$DAT"' EXIT
# one gnuplot data block per quantizer: bpw kld type, sorted by bpw
python3 - "$CSV" >"$DAT" <<'PY'
import csv, sys
rows = {}
for r in csv.DictReader(open(sys.argv[1])):
    rows.setdefault(r["quantizer"], []).append((float(r["bpw"]), float(r["kld"]), r["type"]))
for q, pts in rows.items():
    print(f"# {q}")
    for bpw, kld, t in sorted(pts):
        print(bpw, kld, t)
    print("\n")
PY
names=$(grep '^# ' "$DAT" | cut -c3-)
plot="" i=0
for n in $names; do
  plot+="${plot:+, }'$DAT' index $i using 1:2 with linespoints pt 7 ps 1 lw 1.5 title '$n'"
  i=$((i + 1))
done
gnuplot <<GP
set terminal svg size 760,480 dynamic noenhanced font 'sans,12'
set output '$OUT'
set title 'gut6l GGUF files: KL divergence to F32 vs file bits per weight (lower is better)'
set xlabel 'bits per weight (whole file)'
set ylabel 'KL divergence'
set logscale y
set yrange [0.0002:0.03]
set grid
set key top right
plot $plot, '$DAT' index 0 using 1:(0.00028):3 with labels font 'sans,9' notitle
GP
echo "wrote $OUT"
