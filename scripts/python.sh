#!/usr/bin/env bash
# The Python package (python/, issue #18) as a user gets it: builds the wheel
# from this checkout (`pip wheel ./python`), installs it into a fresh virtual
# environment with numpy, cffi, pytest and tqdm from PyPI, imports it outside
# the checkout, and runs python/tests there, checking its outputs against the
# CLI in BUILD (default build/).   scripts/python.sh [BUILD]
# Without a package index (offline) it skips (exit 77), unless
# DASHQ_REQUIRE_PYTHON=1 (scripts/test.sh) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
if ! timeout 60 python3 -m pip index versions cffi >/dev/null 2>&1; then
  echo "scripts/python.sh: no Python package index reachable (pip index versions cffi failed)" >&2
  [ "${DASHQ_REQUIRE_PYTHON:-0}" = 1 ] && exit 1
  exit 77
fi
venv=$build/python-venv
rm -rf "$venv" "$build/wheels"
python3 -m pip wheel ./python --no-deps -w "$build/wheels" -q
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$build"/wheels/dashq-*.whl pytest tqdm
(cd / && "$venv/bin/python" -c "import dashq; print('dashq', dashq.__version__, 'imported from', dashq.__file__)")
DASHQ_CLI=$build/dashq DASHQ_REQUIRE_CLI=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
