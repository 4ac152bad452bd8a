#!/usr/bin/env bash
# A fuzzing campaign: HOURS (fractions allowed) split evenly over the
# libFuzzer targets (all, or the ones named), one after the other, one
# process each. Each target keeps growing its corpus in build-fuzz/corpus-TARGET
# (not committed; tests/fuzz/corpus/TARGET seeds it) and appends one line to
# results/fuzz_campaign.tsv:
#   started (UTC), target, seconds, executions (libFuzzer's
#   stat::number_of_executed_units), executions per second, findings, corpus files
# A crash, leak, timeout or out-of-memory stops that target's run, keeps the
# input in build-fuzz/findings/TARGET/ and makes the script exit 1 once every
# target has had its turn. Logs: build-fuzz/logs/TARGET.log.
#   scripts/fuzz.sh 2                  # two hours over all seven targets
#   scripts/fuzz.sh 0.5 hf tokenizer   # half an hour, 15 minutes each
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(gguf tasks safetensors hf tokenizer llama2c kld)
if [ $# -lt 1 ]; then
  echo "usage: scripts/fuzz.sh HOURS [TARGET...]   (targets: ${ALL[*]})" >&2
  exit 2
fi
hours=$1
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "unknown fuzz target $t (${ALL[*]})" >&2; exit 2; }
done
secs=$(awk -v h="$hours" -v n=${#targets[@]} 'BEGIN { s = int(h * 3600 / n); print (s < 1 ? 1 : s) }')
out=results/fuzz_campaign.tsv
mkdir -p results build-fuzz/logs
[ -s "$out" ] || printf 'started_utc\ttarget\tseconds\texecutions\texec_per_s\tfindings\tcorpus_files\n' >"$out"
echo "== fuzzing ${targets[*]}: ${secs} s each" >&2
failed=0
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/findings/$t"
  before=$(ls "build-fuzz/findings/$t" | wc -l)
  started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  t0=$(date +%s)
  rc=0
  # one run per target at a time: two would share build-fuzz/fuzz-TARGET.log and lose a count
  exec 9>"build-fuzz/.lock-$t"
  flock -n 9 || { echo "fuzz.sh: $t is already being fuzzed by another run" >&2; exit 2; }
  rm -f "build-fuzz/fuzz-$t.log"
  tests/fuzz/run.sh "$secs" "$t" -artifact_prefix="findings/$t/" >/dev/null 2>&1 || rc=$?
  cp "build-fuzz/fuzz-$t.log" "build-fuzz/logs/$t.log" 2>/dev/null || echo "(no output: build failed?)" >"build-fuzz/logs/$t.log"
  took=$(($(date +%s) - t0)) # build and start-up included; libFuzzer's own count when it finished
  done_s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "build-fuzz/logs/$t.log" | tail -1)
  [ -z "$done_s" ] || took=$done_s
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build-fuzz/logs/$t.log" | tail -1)
  found=$(($(ls "build-fuzz/findings/$t" | wc -l) - before))
  [ "$rc" -eq 0 ] || [ "$found" -gt 0 ] || found=1 # a failure that left no input (build error, ...)
  files=$(ls "build-fuzz/corpus-$t" | wc -l)
  rate=$(awk -v e="${execs:-0}" -v s="$took" 'BEGIN { printf "%.0f", (s > 0 ? e / s : 0) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$started" "$t" "$took" "${execs:-0}" "$rate" "$found" "$files" >>"$out"
  printf '%-12s %6s s %12s executions %7s/s  findings %s\n' "$t" "$took" "${execs:-0}" "$rate" "$found" >&2
  exec 9>&-
  if [ "$found" -gt 0 ]; then
    failed=1
    echo "   $t: see build-fuzz/logs/$t.log and build-fuzz/findings/$t/" >&2
  fi
done
exit $failed
