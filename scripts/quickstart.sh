#!/usr/bin/env bash
# Newcomer's first command: install what is missing, build, and run dashq on a
# real bundled model (gut6l, 5.8M parameters, from ../shared/models).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${DASHQ_SHARED:-../shared}
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== dashq info"
build/dashq info "$SHARED/models/gut6l/gut6l.bin"
echo "== perplexity of gut6l on a held-out book (The Time Machine), 256-token windows"
build/dashq eval "$SHARED/models/gut6l/gut6l.bin" --ppl "$SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt" --ctx 256
echo "== greedy continuation"
build/dashq generate "$SHARED/models/gut6l/gut6l.bin" --prompt "The Time Traveller" -n 48
