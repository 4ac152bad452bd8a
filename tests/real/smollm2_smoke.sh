#!/usr/bin/env bash
# CTest: the whole pipeline on a real, well-trained model (SmolLM2-135M-Instruct,
# fetched by scripts/models.sh), small enough for CI on 2 cores (~3 minutes).
# The bounds come from measured runs (numbers beside each) with room for
# another machine's rounding, and are far from what a broken pipeline gives:
# random codes, a wrong scale layout or a skipped layer send KLD above 1 and
# accuracy to chance.
#   smollm2_smoke.sh DASHQ_BIN SHARED_DIR
set -euo pipefail
DQ=$1
SHARED=${DASHQ_SHARED:-$2}
HERE=$(cd "$(dirname "$0")" && pwd)
M=$("$HERE/../../scripts/models.sh" --offline --path smollm2-135m 2>/dev/null) || {
  echo "SmolLM2-135M is not cached: run scripts/models.sh (skipping)"
  [ -n "${DASHQ_REQUIRE_MODELS:-}" ] && exit 1
  exit 77
}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CAL=$SHARED/data/gutenberg/calib/gutenberg_calib.txt
TEXT=$SHARED/data/wikitext2/wiki.test.raw
EV=(--ppl "$TEXT" --ctx 256 --chunks 8 --llamacpp-compatible --json --quiet -t 2)
QA=(--calib "$CAL" --nsamples 8 --seqlen 256 --quiet -t 2)
fail=0

# check LABEL JSON PYTHON_EXPR: the expression over r (the eval's JSON) must hold
check() {
  python3 - "$1" "$2" "$3" <<'PY' || fail=1
import json, sys
label, r, cond = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ok = eval(cond, {}, {"r": r})
shown = {k: round(v, 5) for k, v in r.items() if k in ("perplexity", "kld", "same_top", "acc", "acc_norm", "n")}
print(f"{'ok  ' if ok else 'FAIL'} {label:34s} {shown}  require {cond}")
sys.exit(0 if ok else 1)
PY
}
first_json() { "$@" | head -1; }

fp=$(first_json "$DQ" eval "$M" "${EV[@]}" --save-logits "$WORK/base.kld")
check "full precision, WikiText-2" "$fp" "20 < r['perplexity'] < 50"                   # 33.51

"$DQ" quantize "$M" --method dashq --bits 2 --group 32 "${QA[@]}" -o "$WORK/w2" >/dev/null
w2=$(first_json "$DQ" eval "$WORK/w2" "${EV[@]}" --kld "$WORK/base.kld")
check "DASH-Q W2 g32 packed" "$w2" "r['kld'] < 3.0 and r['same_top'] > 0.2"          # 2.18, 0.283
"$DQ" quantize "$M" --method rtn --bits 2 --group 32 "${QA[@]}" -o "$WORK/w2rtn" >/dev/null
rtn=$(first_json "$DQ" eval "$WORK/w2rtn" "${EV[@]}" --kld "$WORK/base.kld")
check "RTN W2 g32 is worse than DASH-Q" "$rtn" "r['kld'] > 2 * $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['kld'])" "$w2")" # 6.80

"$DQ" quantize "$M" --method gptq --format gguf --type Q4_K_M "${QA[@]}" -o "$WORK/q4km.gguf" >/dev/null
q4=$(first_json "$DQ" eval "$WORK/q4km.gguf" "${EV[@]}" --kld "$WORK/base.kld")
check "GPTQ Q4_K_M GGUF" "$q4" "r['kld'] < 0.06 and r['same_top'] > 0.85"           # 0.0332, 0.895
arc=$(first_json "$DQ" eval "$WORK/q4km.gguf" --tasks arc_easy --limit 100 --data-dir "$SHARED/data" --json --quiet -t 2)
check "GPTQ Q4_K_M ARC-Easy, 100 items" "$arc" "r['acc'] > 0.35"                     # 0.45; chance 0.25 (+2σ: 0.34)
exit $fail
