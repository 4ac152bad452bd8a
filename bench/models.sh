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
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}
# Builds dashq (the benchmarks measure the working tree).
build_dashq() { cmake --build build -j"$(nproc)" >/dev/null; }
# Makes sure the results file $OUT exists; a new CSV starts with header $1.
start_results() {
  mkdir -p "$(dirname "$OUT")"
  [ -f "$OUT" ] || if [ -n "${1:-}" ]; then echo "$1" >"$OUT"; else : >"$OUT"; fi
}
