#!/usr/bin/env bash
# Paired difference of two zero-shot runs on the same items (issue #12: how far
# a quantized model is from full precision, with the standard error of the
# difference rather than of each score: the items are shared, so the paired
# error is much smaller than the two scores' errors combined).
#   bench/zeroshot_paired.sh A.items.jsonl B.items.jsonl
# Items files from `dashq eval --tasks T --items FILE` (bench/zeroshot_full.sh
# keeps them in its cache). Prints per metric: items, A, B, B - A and its
# standard error sqrt(var(d) / (n - 1)) over the per-item differences d;
# LAMBADA's acc is the greedy match, the other tasks' acc / acc_norm the
# argmax of the log-likelihood / its per-byte form, as dashq scores them.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 A.items.jsonl B.items.jsonl" >&2; exit 2; }
awk '
function field(s, k,   m) { if (match(s, "\"" k "\": *[-0-9]+")) { m = substr(s, RSTART, RLENGTH); sub(/.*: */, "", m); return m + 0 } return -1 }
function greedy(s) { return s ~ /"greedy": *\[true/ }
function task(s,   m) { match(s, /"task": *"[^"]*"/); m = substr(s, RSTART, RLENGTH); sub(/.*: *"/, "", m); sub(/"$/, "", m); return m }
FNR == 1 { f++ }
{
  t = task($0); ln = field($0, "line"); g = field($0, "gold")
  a = (t == "lambada") ? greedy($0) : (field($0, "pred") == g)
  b = (t == "lambada") ? -1 : (field($0, "pred_norm") == g)
  if (f == 1) { A[ln] = a; AN[ln] = b; name = t; next }
  if (!(ln in A)) { printf "item %s of %s is not in the first file\n", ln, FILENAME > "/dev/stderr"; bad = 1; exit 2 }
  n++; sa += A[ln]; sb += a; d = a - A[ln]; sd += d; sdd += d * d
  if (b >= 0) { m++; sna += AN[ln]; snb += b; dn = b - AN[ln]; snd += dn; sndd += dn * dn }
}
function row(metric, n, sa, sb, sd, sdd,   mean, var) {
  mean = sd / n; var = (sdd / n - mean * mean) * n / (n - 1)
  printf "%s\t%s\t%d\t%.4f\t%.4f\t%+.4f\t%.4f\n", name, metric, n, sa / n, sb / n, mean, sqrt(var / n)
}
END {
  if (bad) exit 2
  if (n < 2) { print "fewer than 2 shared items" > "/dev/stderr"; exit 2 }
  print "task\tmetric\titems\tA\tB\tB-A\tse(B-A)"
  row("acc", n, sa, sb, sd, sdd)
  if (m >= 2 && name ~ /^(arc_challenge|arc_easy|piqa|hellaswag)$/) row("acc_norm", m, sna, snb, snd, sndd) # where the harness reports it
}' "$1" "$2"
