#!/bin/bash
# Time against llama.cpp on the same machine, in the same run (issue #15):
#  1. prompt processing: `llama-bench -p 512 -n 0` on the model's F16 GGUF
#     (written by `dashq convert`, which llama.cpp loads) against `dashq
#     bench -p 512 -n 0` (our fp32 forward pass, the calibration's engine);
#  2. end to end, the Q4_K_M file from N x L calibration tokens of the same
#     text: `llama-imatrix` + `llama-quantize --imatrix` against one `dashq
#     quantize --method gptq --format gguf --type Q4_K_M` (and DASH-Q), with
#     the KLD of each file to full precision on WikiText-2 (dashq eval).
# LLAMA_BIN names a folder with llama-bench, llama-imatrix and
# llama-quantize built from a llama.cpp snapshot (not kept here; e.g. the
# source in the llama-cpp-python sdist from PyPI, vendor/llama.cpp, built with
# cmake -DGGML_NATIVE=ON). Appends to results/vs_llamacpp.tsv. Run alone.
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bench/vs_llamacpp.sh
#   MODEL=~/.cache/dashq/synthetic/1.9b TOKENIZER=../shared/models/llama2c-tokenizer32k/tokenizer.model STAGES=pp bench/vs_llamacpp.sh
set -u
cd "$(dirname "$0")/.."
: "${LLAMA_BIN:?set LLAMA_BIN to a folder with llama-bench, llama-imatrix, llama-quantize}"
SHARED=${DASHQ_SHARED:-../shared}
DQ=${DQ:-build/dashq} TH=${TH:-$(nproc)} NSAMPLES=${NSAMPLES:-32} SEQLEN=${SEQLEN:-512} STAGES=${STAGES:-"pp e2e"}
MODEL=${MODEL:-$(scripts/models.sh --path smollm2-135m)} || exit 1
TOK=${TOKENIZER:+--tokenizer $TOKENIZER}
C=$SHARED/data/gutenberg/calib/gutenberg_calib.txt W=$SHARED/data/wikitext2/wiki.test.raw
T=${TMPDIR:-/tmp}/dq_vs_llamacpp
mkdir -p "$T"
out=results/vs_llamacpp.tsv name=$(basename "$MODEL")
[ -s $out ] || printf 'date\tcommit\tmodel\twhat\tllama.cpp\tdashq\tratio_dashq_over_llamacpp\n' > $out
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$name" "$1" "$2" "$3" \
  "$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", b / a }')" | tee -a $out; }
secs() { /usr/bin/time -f %e -o "$T/t" "$@" > "$T/log" 2>&1 || { tail -3 "$T/log" >&2; exit 1; }; cat "$T/t"; }
F16=$T/$name-f16.gguf
[ -f "$F16" ] || $DQ convert "$MODEL" $TOK -o "$F16" --type F16 > /dev/null || exit 1
if [[ " $STAGES " == *" pp "* ]]; then
  l=$("$LLAMA_BIN"/llama-bench -m "$F16" -p 512 -n 0 -t "$TH" -r 3 -o json | python3 -c \
    'import json,sys; print("%.2f" % json.load(sys.stdin)[0]["avg_ts"])')
  d=$($DQ bench "$MODEL" -p 512 -n 0 -r 3 -t "$TH" --json | python3 -c \
    'import json,sys; print("%.2f" % json.loads(sys.stdin.readline())["tokens_per_s"])')
  row "prompt processing pp512, tokens/s ($TH threads; llama.cpp F16, dashq fp32)" "$l" "$d"
fi
if [[ " $STAGES " == *" e2e "* ]]; then
  $DQ eval "$F16" --ppl "$W" --ctx 512 --chunks 20 --llamacpp-compatible --save-logits "$T/fp.kld" --quiet > /dev/null
  li=$(secs "$LLAMA_BIN"/llama-imatrix -m "$F16" -f "$C" -c $SEQLEN --chunks $NSAMPLES -t "$TH" -o "$T/imatrix.dat")
  lq=$(secs "$LLAMA_BIN"/llama-quantize --imatrix "$T/imatrix.dat" "$F16" "$T/lq.gguf" Q4_K_M "$TH")
  lk=$($DQ eval "$T/lq.gguf" --ppl "$W" --ctx 512 --chunks 20 --llamacpp-compatible --kld "$T/fp.kld" --quiet | sed -n 's/^kld: \([0-9.]*\).*/\1/p')
  for m in gptq dashq; do
    d=$(secs $DQ quantize "$MODEL" $TOK --method $m --format gguf --type Q4_K_M --calib "$C" --nsamples $NSAMPLES \
      --seqlen $SEQLEN -t "$TH" -o "$T/dq-$m.gguf" --quiet)
    dk=$($DQ eval "$T/dq-$m.gguf" --ppl "$W" --ctx 512 --chunks 20 --llamacpp-compatible --kld "$T/fp.kld" --quiet | sed -n 's/^kld: \([0-9.]*\).*/\1/p')
    row "Q4_K_M from $NSAMPLES x $SEQLEN tokens, seconds: llama-imatrix $li + llama-quantize $lq vs dashq $m (KLD llama.cpp $lk, dashq $dk)" \
      "$(awk -v a="$li" -v b="$lq" 'BEGIN { print a + b }')" "$d"
  done
fi
