#!/usr/bin/env bash
# examples/quantize (public header only) on stories260K: GPTQ with method
# options, a progress line per block through the callback, nothing on stderr
# from the library, a checkpoint that dashq evaluates; a bad option refused.
#   tests/examples/example_quantize.sh EXAMPLE DASHQ SHARED
set -euo pipefail
ex=$1 dashq=$2 shared=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$shared/models/stories260K/stories260K.bin
calib=$shared/data/tinystories/tinystories_train_sample.txt
"$ex" "$model" "$calib" "$work/q" gptq act_order,percdamp=0.05 >"$work/out" 2>"$work/err"
fail() { echo "FAIL: $*" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
[ ! -s "$work/err" ] || fail "the library wrote to stderr"
layers=$("$dashq" info "$model" | sed -n "s/^layers: *//p")
[ "$(grep -c '^quantize ' "$work/out")" -eq "$layers" ] || fail "want $layers progress lines"
grep -q "^quantize $layers/$layers$" "$work/out" || fail "the stage does not close"
grep -q "^$work/q: $((layers * 7)) tensors, mean relative output error 0\.[0-9]*" "$work/out" || fail "no summary"
"$dashq" eval "$work/q" --ppl "$calib" --ctx 64 --chunks 2 --quiet | grep -q '^perplexity: ' || fail "does not evaluate"
if "$ex" "$model" "$calib" "$work/r" rtn act_order >"$work/out" 2>"$work/err"; then fail "rtn took act_order"; fi
grep -q "method rtn has no option 'act_order'" "$work/err" || fail "no message for a bad option"
[ ! -e "$work/r" ] || fail "a refused job wrote output"
echo "ok"
