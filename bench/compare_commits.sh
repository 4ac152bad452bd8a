#!/usr/bin/env bash
# Speed of the working tree against an earlier commit, interleaved in one run
# so both binaries see the same machine: the forward pass (dashq bench, prompt
# of 512 and 128 generated tokens) and quantization (GPTQ and DASH-Q, W4 g128,
# 32 windows of 256 tokens), as user CPU seconds at one thread. The refactors
# of issue #14 must not slow either (a ratio near 1.00).
#
#   bench/compare_commits.sh REV [MODEL] [ROUNDS]     MODEL: gut6l (default, ~1 min a round), stories260K,
#                                                     smollm2-135m (~8 min a round)
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
# User CPU seconds at one thread: on a shared 2-core VM wall times of the
# same binary spread by +-15 % between runs; CPU time of one thread does not.
cpu() { /usr/bin/time -f %U "$@" 2>&1 >/dev/null | tail -1; }
declare -A res
for r in $(seq "$rounds"); do
  for bin in old new; do
    b=${!bin}
    res[$bin,pp]+=" $(cpu "$b" bench "$model" -p 512 -n 0 -r 4 -t 1 --json)"
    res[$bin,tg]+=" $(cpu "$b" bench "$model" -p 0 -n 128 -r 4 -t 1 --json)"
    for m in gptq dashq; do
      res[$bin,$m]+=" $(cpu "$b" quantize "$model" --method $m --bits 4 --group 128 --calib "$calib" --nsamples 32 \
        --seqlen 256 --seed 0 -t 1 -o "$work/q" --quiet)"
      rm -rf "$work/q"
    done
  done
done
echo "## $name: working tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)) against $rev"
echo
echo "User CPU seconds at one thread, median of $rounds rounds (lower is faster)."
echo
echo "| job | $rev | now | now / $rev |"
echo "|---|---:|---:|---:|"
for k in pp tg gptq dashq; do
  o=$(median ${res[old,$k]}) n=$(median ${res[new,$k]})
  label=$(case $k in pp) echo "forward: 4 x prompt 512";; tg) echo "forward: 4 x 128 generated";; *) echo "quantize $k W4 g128, 32 x 256";; esac)
  printf '| %s | %.2f | %.2f | %.3f |\n' "$label" "$o" "$n" "$(python3 -c "print($n / $o)")"
done
