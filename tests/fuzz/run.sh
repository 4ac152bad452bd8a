#!/usr/bin/env bash
# Builds a libFuzzer target with clang + ASan + UBSan and runs it for SECONDS
# (default 120). A crash, leak or sanitizer report fails the run and leaves
# the input in build-fuzz/.
#   tests/fuzz/run.sh [SECONDS] [gguf|tasks]
#   gguf:  the GGUF reader, model and tokenizer loaders, seeded with a
#          llama.cpp-written GGUF and its first 16 KiB
#   tasks: task-file lines and sweep CSVs, seeded with the first lines of each
#          task file in ../shared/data and a sweep CSV
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-120}
what=${2:-gguf}
SHARED=${DASHQ_SHARED:-../shared}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDQ_SANITIZE=ON -DDQ_FUZZ=ON -DDQ_TESTS=OFF >/dev/null
cmake --build build-fuzz --target "fuzz_$what" -j"$(nproc)" >/dev/null
corpus=build-fuzz/corpus-$what
mkdir -p "$corpus"
case $what in
  gguf)
    cp tests/fixtures/gguf/stories260K-f16.gguf "$corpus/seed-full.gguf"
    head -c 16384 tests/fixtures/gguf/stories260K-f16.gguf >"$corpus/seed-head.gguf" ;;
  tasks) # first byte: task id (piqa, arc_easy, arc_challenge, hellaswag, winogrande, boolq, lambada)
    i=0
    for f in piqa arc_easy arc_challenge - winogrande boolq lambada_openai; do
      [ "$f" = - ] || { printf "\\x$(printf %02x $i)"; head -n 3 "$SHARED/data/llm-foundry-icl/$f.jsonl"; } >"$corpus/seed-$i"
      i=$((i + 1))
    done
    { printf "\\x03"; bzcat "$SHARED/data/hellaswag/hellaswag_val_full.txt.bz2" | head -n 12 || true; } >"$corpus/seed-3" # bzcat stops on SIGPIPE
    { printf '\x00'; head -n 5 results/quant_sweep.csv; } >"$corpus/seed-csv" ;;
  *) echo "unknown fuzz target $what" >&2; exit 2 ;;
esac
cd build-fuzz
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "./fuzz_$what" "corpus-$what" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -15
