#!/usr/bin/env bash
# Zero-shot accuracy of the bundled models on every item of the seven tasks,
# scored as lm-evaluation-harness does, and the scoring throughput next to the
# forward pass's prompt-processing speed in the same run.
#
#   bench/zeroshot.sh [MODEL...]        (default: gut6l stories260K)
#
# Writes results/zeroshot.jsonl (one JSON line per model and task; rerunning
# replaces a model's lines). Do not run other multi-threaded jobs alongside.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
OUT=${OUT:-results/zeroshot.jsonl}
TASKS=piqa,arc_easy,arc_challenge,hellaswag,winogrande,boolq,lambada
build_dashq
start_results
pp128() { # prompt-processing tokens/s of a 128-token prompt
  build/dashq bench "$1" -p 128 -n 1 -r 5 --json | python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    if r["test"].startswith("pp"): print(r["tokens_per_s"])'
}
for name in ${*:-gut6l stories260K}; do
  read -r model _ _ _ <<<"$(model_spec "$name")"
  pp_before=$(pp128 "$model")
  lines=$(build/dashq eval "$model" --tasks "$TASKS" --data-dir "$SHARED/data" --json --quiet)
  pp=$(python3 -c "print(max($pp_before, $(pp128 "$model")))") # the machine is shared: best of two
  grep -v "\"model\": \"$name\"" "$OUT" >"$OUT.tmp" || true
  while IFS= read -r l; do
    echo "{\"model\": \"$name\", \"pp128_tokens_per_second\": $pp, ${l#\{}" >>"$OUT.tmp"
  done <<<"$lines"
  mv "$OUT.tmp" "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
print(f"{'model':12} {'task':14} {'n':>6} {'acc':>14} {'acc_norm':>14} {'tok/s':>7} {'of pp128':>8}")
for l in open(sys.argv[1]):
    r = json.loads(l)
    tps = r["tokens"] / r["seconds"] if r["seconds"] else 0
    norm = f"{r['acc_norm']:.4f}±{r['acc_norm_stderr']:.4f}" if "acc_norm" in r else "-"
    print(f"{r['model']:12} {r['task']:14} {r['n']:6} {r['acc']:.4f}±{r['acc_stderr']:.4f} {norm:>14} {tps:7.0f} {tps / r['pp128_tokens_per_second']:8.2f}")
PY
