#!/usr/bin/env bash
# Builds a libFuzzer target with clang + ASan + UBSan and runs it for SECONDS
# (default 120). A crash, leak, timeout or sanitizer report fails the run and
# leaves the input in build-fuzz/ (crash-*, leak-*, timeout-*, oom-*).
#   tests/fuzz/run.sh [SECONDS] [TARGET] [libFuzzer flags...]
#   gguf:        the GGUF reader, model and tokenizer loaders, seeded with a
#                llama.cpp-written GGUF and its first 16 KiB
#   tasks:       task-file lines and sweep CSVs, seeded with the first lines of
#                each task file in ../shared/data and a sweep CSV
#   safetensors: safetensors headers and data bounds (dq_st_open)
#   hf:          Hugging Face folders: config.json, model.safetensors, the
#                packed checkpoint's dashq_config.json, the shard index
#   tokenizer:   tokenizer.json (+ tokenizer_config.json), vocab.json +
#                merges.txt, llama2.c tokenizer.bin, sentencepiece .model
#   llama2c:     llama2.c checkpoint headers and weights
#   kld:         KL-divergence base files (--kld) against a tiny model
# The last five start from tests/fuzz/corpus/TARGET (tests/fuzz/make_corpus.py
# writes it). The growing corpus stays in build-fuzz/corpus-TARGET.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-120}
what=${2:-gguf}
shift $(($# < 2 ? $# : 2))
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
    { printf '\x00'; head -n 5 results/quant_sweep.csv; } >"$corpus/seed-csv"
    { printf '\x00'; head -n 3 results/smollm2_sweep_zeroshot.jsonl; } >"$corpus/seed-zeroshot" ;;
  safetensors|hf|tokenizer|llama2c|kld)
    cp tests/fuzz/corpus/"$what"/* "$corpus"/ ;;
  *) echo "unknown fuzz target $what (gguf, tasks, safetensors, hf, tokenizer, llama2c, kld)" >&2; exit 2 ;;
esac
cd build-fuzz
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "./fuzz_$what" "corpus-$what" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -timeout=30 \
  -print_final_stats=1 "$@" 2>&1 | tee "fuzz-$what.log" | tail -15 # the whole output stays in build-fuzz/fuzz-TARGET.log
