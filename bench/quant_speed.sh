#!/usr/bin/env bash
# Quantization time per stage (forward, statistics, solve) and per layer, GPTQ
# against DASH-Q, on the bundled models: W4 g128, 128 calibration windows of
# 256 tokens, all cores. Prints markdown tables.
#
#   bench/quant_speed.sh [MODEL...]     (default: gut6l stories260K)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
build_dashq
models=("$@"); [ ${#models[@]} -eq 0 ] && models=(gut6l stories260K)
for name in "${models[@]}"; do
  read -r model calib _ _ <<<"$(model_spec "$name")"
  for method in gptq dashq; do
    build/dashq quantize "$model" --method $method --bits 4 --group 128 --calib "$calib" --nsamples 128 \
      --seqlen 256 --seed 0 -o "$WORK/out" --quiet >"$WORK/$name.$method.txt" 2>/dev/null
  done
done
python3 - "$WORK" "${models[@]}" <<'PY'
import re, sys, collections
work, models = sys.argv[1], sys.argv[2:]
def parse(path):
    layers, stages = {}, None
    for line in open(path):
        m = re.match(r"(model\.layers\.\d+\.\S+|lm_head)\s+([\d.]+)\s+", line)
        if m: layers[m.group(1)] = float(m.group(2))
        m = re.match(r"time: forward ([\d.]+) s, statistics ([\d.]+) s, solve ([\d.]+) s, total ([\d.]+) s", line)
        if m: stages = [float(x) for x in m.groups()]
    return layers, stages
print("| model | method | forward (s) | statistics (s) | solve (s) | total (s) |")
print("|---|---|---|---|---|---|")
res = {}
for name in models:
    for method in ("gptq", "dashq"):
        res[name, method] = parse(f"{work}/{name}.{method}.txt")
        f, s, v, t = res[name, method][1]
        print(f"| {name} | {method} | {f:.2f} | {s:.2f} | {v:.2f} | {t:.2f} |")
print("\n| model | layer type | GPTQ solve (ms/layer) | DASH-Q solve (ms/layer) | ratio |")
print("|---|---|---|---|---|")
for name in models:
    by = collections.defaultdict(lambda: [0.0, 0.0, 0])
    for layer, t in res[name, "gptq"][0].items():
        kind = layer.split(".")[-1] if layer.startswith("model.") else layer
        by[kind][0] += t; by[kind][1] += res[name, "dashq"][0][layer]; by[kind][2] += 1
    ratio = lambda g, d: f"{g/d:.1f}x" if g >= 5e-4 and d >= 5e-4 else "below timer resolution"
    for kind, (g, d, n) in by.items():
        print(f"| {name} | {kind} | {1e3*g/n:.2f} | {1e3*d/n:.2f} | {ratio(g, d)} |")
    g = sum(res[name, "gptq"][0].values()); d = sum(res[name, "dashq"][0].values())
    print(f"| {name} | **all layers** | {1e3*g:.1f} total | {1e3*d:.1f} total | **{ratio(g, d)}** |")
PY
