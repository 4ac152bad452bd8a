#!/usr/bin/env bash
# The whole test suite: a release build, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. Needs ../shared (or DASHQ_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
run() {  # build dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  (cd "$dir" && ctest --output-on-failure -j"$jobs")
}
echo "== release build (gcc, -Wall -Wextra -Werror)"
run build -DCMAKE_BUILD_TYPE=Release
echo "== ASan + UBSan build"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDQ_SANITIZE=ON
