#!/usr/bin/env bash
# Forward-pass throughput and memory of dashq against llama.cpp on the same
# machine, in the same run, interleaved so both see the same noise.
#
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin bench/forward.sh [ROUNDS]
#
# llama.cpp is not part of this repository: build it yourself (CPU, Release)
# and point LLAMA_CPP_BIN at its bin folder. Models come from ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${DASHQ_SHARED:-../shared}
B=${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to a llama.cpp build/bin folder}
ROUNDS=${1:-3}
T=${THREADS:-2}
cmake --build build -j"$(nproc)" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
lcpp() {  # model.gguf test(pp512|tg128) -> tokens/s
  local args=(-p 512 -n 0); [ "$2" = tg128 ] && args=(-p 0 -n 128)
  "$B/llama-bench" -m "$1" -t "$T" -r 5 "${args[@]}" -o json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])'
}
dq() {  # model test -> tokens/s
  local args=(-p 512 -n 0); [ "$2" = tg128 ] && args=(-p 0 -n 128)
  build/dashq bench "$1" -t "$T" -r 5 "${args[@]}" --json |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["tokens_per_s"])'
}

echo "machine: $(lscpu | sed -n "s/Model name: *//p"), $(nproc) cores, threads $T; llama.cpp binaries: $B"
echo
echo "| model | test | dashq tok/s | llama.cpp tok/s | ratio | sgemm ceiling tok/s |"
echo "|---|---|---:|---:|---:|---:|"
for spec in stories260K:stories260K.bin:tok512.bin gut6l:gut6l.bin:tokenizer.bin; do
  IFS=: read -r name bin tok <<<"$spec"
  model="$SHARED/models/$name/$bin"
  "$B/llama-convert-llama2c-to-ggml" --copy-vocab-from-model "$SHARED/models/$name/$tok" \
    --llama2c-model "$model" --llama2c-output-model "$tmp/$name.gguf" >/dev/null 2>&1
  ceiling=$(build/sgemm_ceiling "$model" -p 512 -t "$T" | sed -n 's/.*: \([0-9.]*\) tokens.*/\1/p')
  for test in pp512 tg128; do
    a=(); b=()
    for _ in $(seq "$ROUNDS"); do a+=("$(dq "$model" $test)"); b+=("$(lcpp "$tmp/$name.gguf" $test)"); done
    ma=$(median "${a[@]}"); mb=$(median "${b[@]}")
    c="-"; [ $test = pp512 ] && c=$(printf %.0f "$ceiling")
    printf "| %s | %s | %.0f | %.0f | %.2fx | %s |\n" "$name" $test "$ma" "$mb" "$(python3 -c "print($ma/$mb)")" "$c"
  done
done

echo
echo "Peak RSS while evaluating perplexity (gut6l, The Time Machine, 256-token windows):"
text="$SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt"
rss_dq=$(/usr/bin/time -f %M build/dashq eval "$SHARED/models/gut6l/gut6l.bin" --ppl "$text" --ctx 256 \
  --llamacpp-compatible --quiet 2>&1 >/dev/null | tail -1)
rss_lc=$(/usr/bin/time -f %M "$B/llama-perplexity" -m "$tmp/gut6l.gguf" -f "$text" -c 256 -b 256 -t "$T" \
  2>&1 >/dev/null | tail -1)
echo "| dashq eval | ${rss_dq} KiB |"
echo "| llama-perplexity | ${rss_lc} KiB |"
