#!/usr/bin/env bash
# Builds the GGUF reader's libFuzzer target with clang + ASan + UBSan and runs
# it for SECONDS (default 120), seeded with a llama.cpp-written GGUF and its
# first 16 KiB (header, metadata and tensor infos only). A crash, leak or
# sanitizer report fails the run and leaves the input in build-fuzz/.
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-120}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDQ_SANITIZE=ON -DDQ_FUZZ=ON -DDQ_TESTS=OFF >/dev/null
cmake --build build-fuzz --target fuzz_gguf -j"$(nproc)" >/dev/null
corpus=build-fuzz/corpus
mkdir -p "$corpus"
cp tests/fixtures/gguf/stories260K-f16.gguf "$corpus/seed-full.gguf"
head -c 16384 tests/fixtures/gguf/stories260K-f16.gguf >"$corpus/seed-head.gguf"
cd build-fuzz
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ./fuzz_gguf corpus -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -15
