#!/usr/bin/env bash
# CTest `golden`: every output dashq writes or prints, over every method x
# format x bundled model, hashed and compared with the hashes recorded before
# a refactor (issue #14: "byte-identical before and after"). Outputs are
# deterministic at any thread count, but not across CPUs or compilers (OpenBLAS
# picks kernels per CPU, -march=native, FMA contraction), so the hashes are
# kept per signature (CPU model, family and model number, which pick
# OpenBLAS's kernels, vector extensions, compiler and version): a signature
# with no recorded hashes skips (77) and says how to record them. Release
# builds only (other optimisation levels round differently).
#
#   golden.sh DASHQ_BIN SHARED_DIR COMPILER_ID_AND_VERSION [--update]
# --update records this machine's hashes (replacing its signature's lines).
set -euo pipefail
DQ=$(realpath "$1")
SHARED=$(realpath "${DASHQ_SHARED:-$2}")
CC_ID=$3
MODE=${4:-check}
HERE=$(cd "$(dirname "$0")" && pwd)
HASHES=$HERE/hashes.txt
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cpu="$cpu-$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -1)-$(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -1)"
ext=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512bw|avx512vl|avx512_bf16|f16c' | sort | tr '\n' '+')
SIG=$(printf '%s|%s|%s|%s' "$(uname -m)" "$cpu" "$ext" "$CC_ID" | tr -c 'A-Za-z0-9|+._-' '_')

if [ "$MODE" != --update ] && ! grep -q "^$SIG " "$HASHES" 2>/dev/null; then
  echo "no golden hashes for this machine ($SIG): record them from a known-good commit with"
  echo "  tests/golden/golden.sh build/dashq ../shared '$CC_ID' --update"
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Paths written into outputs (dashq_config.json's base_model, eval's "model")
# must not depend on where the checkout or the temporary folder is: run in
# WORK with ../shared reached as the relative link shared/.
cd "$WORK"
ln -s "$SHARED" shared
S=shared/models
CAL_GUT=shared/data/gutenberg/calib/gutenberg_calib.txt
EV_GUT=shared/data/gutenberg/eval/pg35_The_Time_Machine.txt
CAL_TS=shared/data/tinystories/tinystories_train_sample.txt
EV_TS=shared/data/tinystories/tinystories_valid_sample.txt

# emit NAME PATH: one "NAME sha256" line per file (a folder: each file in it)
emit() {
  if [ -d "$2" ]; then
    (cd "$2" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$1/${f#./} $(sha256sum <"$f" | cut -c1-64)"; done)
  else
    echo "$1 $(sha256sum <"$2" | cut -c1-64)"
  fi
}
# text NAME CMD...: the command's stdout, hashed (numbers printed by eval),
# less what legitimately varies: the temporary folder's name and timings
text() {
  local n=$1
  shift
  "$@" | sed -e "s#$WORK#WORK#g" -e 's/"seconds": [0-9.]*/"seconds": T/g' >"$WORK/out.txt"
  emit "$n" "$WORK/out.txt"
}

# run_model LABEL MODEL CALIB EVAL CTX GGUF_TYPES CONFIGS...: every output for
# one model; CONFIGS are "METHOD BITS GROUP [OPTIONS]" packed quantizations
run_model() {
  local l=$1 m=$2 cal=$3 ev=$4 ctx=$5 types=$6
  shift 6
  local configs=("$@")
  local qa=(--calib "$cal" --nsamples 4 --seqlen "$ctx" --seed 1 --quiet)
  local eva=(--ppl "$ev" --ctx "$ctx" --chunks 4 --quiet)
  text "$l/eval-ppl" "$DQ" eval "$m" "${eva[@]}" --json
  "$DQ" eval "$m" "${eva[@]}" --save-logits "$l.kld" >/dev/null
  emit "$l/base.kld" "$l.kld"
  text "$l/eval-llamacpp" "$DQ" eval "$m" "${eva[@]}" --llamacpp-compatible --json
  # packed checkpoints: every method, bit width and the options that change the solve
  local cfg
  for cfg in "${configs[@]}"; do
    set -- $cfg
    local name="$l/packed-$(echo "$cfg" | tr ' ' '_')" meth=$1 bits=$2 grp=$3
    shift 3
    "$DQ" quantize "$m" --method "$meth" --bits "$bits" --group "$grp" "${qa[@]}" "$@" -o q >/dev/null
    emit "$name" q
    text "$name/eval" "$DQ" eval q "${eva[@]}" --kld "$l.kld" --json
    rm -rf q
  done
  # GGUF on llama.cpp's grids
  local t meth
  for t in $types; do
    for meth in rtn gptq dashq; do
      "$DQ" quantize "$m" --method $meth "${qa[@]}" --format gguf --type $t -o q.gguf >/dev/null
      emit "$l/gguf-$meth-$t" q.gguf
    done
    text "$l/gguf-dashq-$t/eval" "$DQ" eval q.gguf "${eva[@]}" --kld "$l.kld" --json
  done
  # conversions
  for t in F32 F16 Q8_0; do
    "$DQ" convert "$m" -o c.gguf --type $t >/dev/null
    emit "$l/convert-$t" c.gguf
  done
  "$DQ" convert "$m" --format hf -o hf >/dev/null
  emit "$l/convert-hf" hf
  rm -rf hf
}

# all methods and options on the small model; the main paths on gut6l (llama2.c
# and Hugging Face readers: the same weights). About 1.5 CPU-minutes.
ALL=("rtn 4 32" "rtn 3 32 --sym" "rtn 4 32 --mse" "gptq 4 32" "gptq 2 32 --act-order" "gptq 3 64 --sym"
     "dashq 4 32" "dashq 2 32" "dashq 3 32 --reweight huber" "dashq 4 64 --quantize-head")
{
  run_model stories260K "$S/stories260K/stories260K.bin" "$CAL_TS" "$EV_TS" 64 "Q4_K_M Q2_K Q3_K_S Q4_0 IQ4_NL" "${ALL[@]}"
  run_model gut6l "$S/gut6l/gut6l.bin" "$CAL_GUT" "$EV_GUT" 128 "Q4_K_M Q2_K" "rtn 4 128" "gptq 3 64" "dashq 2 32"
  run_model gut6l-hf "$S/gut6l-hf" "$CAL_GUT" "$EV_GUT" 128 "Q3_K_M" "gptq 4 128"
  text gut6l/tasks "$DQ" eval "$S/gut6l/gut6l.bin" --tasks piqa,arc_easy,arc_challenge,hellaswag,winogrande,boolq,lambada \
    --limit 8 --data-dir shared/data --json --quiet
  text gut6l/generate "$DQ" generate "$S/gut6l/gut6l.bin" --prompt "The time traveller" -n 24 --temp 0 --quiet
} >"$WORK/hashes"

if [ "$MODE" = --update ]; then
  { grep -v "^$SIG " "$HASHES" 2>/dev/null || true; sed "s/^/$SIG /" "$WORK/hashes"; } >"$WORK/all"
  mv "$WORK/all" "$HASHES"
  echo "recorded $(wc -l <"$WORK/hashes") hashes for $SIG"
  exit 0
fi
grep "^$SIG " "$HASHES" | cut -d' ' -f2- >"$WORK/want"
if diff "$WORK/want" "$WORK/hashes" >"$WORK/diff"; then
  echo "golden: $(wc -l <"$WORK/hashes") outputs byte-identical ($SIG)"
else
  echo "golden: outputs differ from the recorded ones ($SIG):"
  cat "$WORK/diff"
  exit 1
fi
