#!/usr/bin/env bash
# Speed of the working tree against an earlier commit, interleaved in one run
# so both binaries see the same machine: forward throughput (dashq bench,
# prompt of 512 and 128 generated tokens) and quantization wall time (GPTQ and
# DASH-Q, W4 g128, 32 windows of 256 tokens). The refactors of issue #14 must
# not slow either (a ratio near 1.00).
#
#   bench/compare_commits.sh REV [MODEL] [ROUNDS]     MODEL: gut6l (default), stories260K, smollm2-135m
#
# REV is built into a temporary worktree (Release); nothing else may run
# beside it (OpenMP threads that spin under oversubscription skew timings).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
rev=$1 name=${2:-gut6l} rounds=${3:-5}
read -r model calib _ _ <<<"$(model_spec "$name")"
build_dashq
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/old" "$rev" >/dev/null 2>&1
cmake -S "$work/old" -B "$work/old/build" -DCMAKE_BUILD_TYPE=Release -DDQ_TESTS=OFF >/dev/null
cmake --build "$work/old/build" -j"$(nproc)" --target dashq_cli >/dev/null
old=$work/old/build/dashq new=build/dashq
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
tps() { "$1" bench "$model" -r 3 "${@:2}" --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["tokens_per_s"])'; }
qsec() { # BIN METHOD -> wall seconds of the whole quantization
  local t0 t1
  t0=$(date +%s.%N)
  "$1" quantize "$model" --method "$2" --bits 4 --group 128 --calib "$calib" --nsamples 32 --seqlen 256 --seed 0 \
    -o "$work/q" --quiet >/dev/null 2>&1
  t1=$(date +%s.%N)
  rm -rf "$work/q"
  python3 -c "print($t1 - $t0)"
}
declare -A res
for r in $(seq "$rounds"); do
  for bin in old new; do
    b=${!bin}
    res[$bin,pp]+=" $(tps "$b" -p 512 -n 0)"
    res[$bin,tg]+=" $(tps "$b" -p 0 -n 128)"
    res[$bin,gptq]+=" $(qsec "$b" gptq)"
    res[$bin,dashq]+=" $(qsec "$b" dashq)"
  done
done
echo "## $name: working tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)) against $rev, median of $rounds rounds"
echo
echo "| measure | $rev | now | now / $rev |"
echo "|---|---:|---:|---:|"
for k in pp tg gptq dashq; do
  o=$(median ${res[old,$k]}) n=$(median ${res[new,$k]})
  unit=$([ "$k" = pp ] || [ "$k" = tg ] && echo "tok/s" || echo "s")
  label=$(case $k in pp) echo "forward, prompt 512";; tg) echo "forward, 128 generated";; *) echo "quantize $k";; esac)
  printf '| %s (%s) | %.2f | %.2f | %.3f |\n' "$label" "$unit" "$o" "$n" "$(python3 -c "print($n / $o)")"
done
