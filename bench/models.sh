# Sourced by the benchmarks: the bundled models and the real ones scripts/models.sh fetches with their calibration and
# held-out texts (model_spec NAME prints "MODEL CALIB EVAL [EVAL2]"), and the setup
# they share.
SHARED=${DASHQ_SHARED:-../shared}
model_spec() {
  case $1 in
    gut6l) echo "$SHARED/models/gut6l/gut6l.bin $SHARED/data/gutenberg/calib/gutenberg_calib.txt $SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt" ;;
    stories260K) echo "$SHARED/models/stories260K/stories260K.bin $SHARED/data/tinystories/tinystories_train_sample.txt $SHARED/data/tinystories/tinystories_valid_sample.txt" ;;
    smollm2-135m) # fetched by scripts/models.sh; judged on WikiText-2 test, calibrated on the Gutenberg text
      echo "$(scripts/models.sh --path smollm2-135m) $SHARED/data/gutenberg/calib/gutenberg_calib.txt $SHARED/data/wikitext2/wiki.test.raw $SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt" ;;
    smollm2-135m-dither1) # SmolLM2 with its Q4_1 rounding undone by a seeded dither (bench/dither_reference.py)
      echo "$(smollm2_dither 1) $SHARED/data/gutenberg/calib/gutenberg_calib.txt $SHARED/data/wikitext2/wiki.test.raw $SHARED/data/gutenberg/eval/pg35_The_Time_Machine.txt" ;;
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}
# smollm2_dither SEED: the path of SmolLM2's weights off their Q4_1 grid (an F32 Hugging Face folder, made once in
# the model cache by `dashq convert` and bench/dither_reference.py; needs build/dashq).
smollm2_dither() {
  local cache=${DASHQ_MODELS:-$HOME/.cache/dashq/models} q41
  q41=$(scripts/models.sh --path smollm2-135m)
  [ -s "$cache/smollm2-135m-f32/model.safetensors" ] ||
    build/dashq convert "$q41" --format hf --type F32 -o "$cache/smollm2-135m-f32" >/dev/null
  [ -s "$cache/smollm2-135m-dither$1/model.safetensors" ] ||
    bench/dither_reference.py "$cache/smollm2-135m-f32" "$cache/smollm2-135m-dither$1" "$1" >/dev/null
  echo "$cache/smollm2-135m-dither$1"
}
# Builds dashq (the benchmarks measure the working tree).
build_dashq() { cmake --build build -j"$(nproc)" >/dev/null; }
# Makes sure the results file $OUT exists; a new CSV starts with header $1.
start_results() {
  mkdir -p "$(dirname "$OUT")"
  [ -f "$OUT" ] || if [ -n "${1:-}" ]; then echo "$1" >"$OUT"; else : >"$OUT"; fi
}
# A METHODS entry names a method and its flags: "gptq+act-order+mse", "oac+curvature=oac-token+percdamp=0.1"
# (a flag with a value takes it after '='); method_args SPEC sets margs=(--method oac --curvature oac-token ...).
method_args() {
  local -a spec
  IFS=+ read -r -a spec <<<"$1"
  margs=(--method "${spec[0]}")
  local f
  for f in "${spec[@]:1}"; do
    if [[ $f == *=* ]]; then margs+=("--${f%%=*}" "${f#*=}"); else margs+=("--$f"); fi
  done
}
# zeroshot MODEL_FILE LABEL JSONL: with TASKS set (LIMIT items each, default 100), appends one JSON line per
# task to JSONL, tagged {"cell": LABEL}; a label already there is not rerun.
zeroshot() {
  [ -n "${TASKS:-}" ] || return 0
  grep -q "\"cell\": \"$2\"" "$3" 2>/dev/null && return 0
  build/dashq eval "$1" --tasks "$TASKS" --limit "${LIMIT:-100}" --data-dir "$SHARED/data" --json --quiet |
    sed "s/^{/{\"cell\": \"$2\", /" >>"$3" || true
}
