#!/bin/bash
# Peak memory (RSS, /usr/bin/time) and time of `dashq quantize` on synthetic
# Llama folders of the sizes users quantize (issue #15), this build against
# another (OLD=/path/to/old/dashq OLD_COMMIT=a2c4f5f, e.g. a build of commit
# a2c4f5f, before streaming). The models are made once by build/tests/make_synthetic_llama
# (random bf16 weights, 4 shards) into ${DASHQ_SYNTHETIC:-~/.cache/dashq/synthetic};
# never commit them. One line per run is appended to results/memory.tsv.
#   bench/memory.sh                          # 1.9B: DASH-Q, GPTQ (packed W4 g128), DASH-Q Q4_K_M GGUF
#   JOBS="convert-hf convert-gguf" OLD=... bench/memory.sh
#   MODEL=1.9b-q8_0 JOBS="rtn-gguf convert-hf" bench/memory.sh   (the 1.9B model as a Q8_0 GGUF source)
#     (dashq convert: Hugging Face folder in BF16, 5 GB shards; GGUF Q8_0)
#   JOBS="gptq" NSAMPLES=2 SEQLEN=64 bench/memory.sh
#   JOBS=eval-ppl NSAMPLES=8 SEQLEN=512 EXTRA="--mem-budget 2G" bench/memory.sh   (perplexity, block by block past 2G)
#   MODEL=llama3-8b LAYERS=2 JOBS=gptq NSAMPLES=8 SEQLEN=2048 EXTRA="--mem-budget 1" bench/memory.sh
#     (Llama-3-8B widths, 2 of its 32 blocks; EXTRA: more quantize flags, here the
#     calibration hidden states spilled to a file beside the output, in $TMPDIR)
# Run alone: timings beside other jobs on 2 cores mean nothing (RSS still does).
set -u
cd "$(dirname "$0")/.."
NEW=${NEW:-build/dashq} OLD=${OLD:-}
SHARED=${DASHQ_SHARED:-../shared}
C=${DASHQ_SYNTHETIC:-$HOME/.cache/dashq/synthetic}
MODEL=${MODEL:-1.9b} NSAMPLES=${NSAMPLES:-2} SEQLEN=${SEQLEN:-64}
JOBS=${JOBS:-"dashq gptq dashq-gguf"} LAYERS=${LAYERS:-} EXTRA=${EXTRA:-}
TOK=$SHARED/models/llama2c-tokenizer32k/tokenizer.model
CAL=$SHARED/data/wikitext2/wiki.test.raw
cmake --build build --target make_synthetic_llama >/dev/null || exit 1
name=$MODEL${LAYERS:+-${LAYERS}l}
mkdir -p "$C"
base=${name%-q8_0} src=$C/$name
[ -f "$C/$base/config.json" ] || build/tests/make_synthetic_llama "${MODEL%-q8_0}" "$C/$base" ${LAYERS:+--layers $LAYERS} || exit 1
if [ "$base" != "$name" ]; then # MODEL=1.9b-q8_0: the same model as a Q8_0 GGUF (a quantized source)
  src=$C/$name.gguf
  [ -f "$src" ] || $NEW convert "$C/$base" --tokenizer $TOK --type Q8_0 -o "$src" --quiet || exit 1
fi
out=results/memory.tsv T=${TMPDIR:-/tmp}
[ -s $out ] || printf 'date\tcommit\tbuild\tmodel\tjob\tcalib_tokens\tpeak_rss_mb\twall_s\n' > $out
for b in $NEW $OLD; do
  commit=$(git rev-parse --short HEAD)
  [ "$b" = "$NEW" ] || commit=${OLD_COMMIT:-old} # the OLD build's commit: say it (OLD_COMMIT=a2c4f5f)
  for job in $JOBS; do
    case $job in
      dashq) args="--method dashq --bits 4 --group 128" o=$T/dq_mem_q ;;
      gptq) args="--method gptq --bits 4 --group 128" o=$T/dq_mem_q ;;
      dashq-gguf) args="--method dashq --format gguf --type Q4_K_M" o=$T/dq_mem_q.gguf ;;
      rtn-gguf) args="--method rtn --format gguf --type Q4_K_M" o=$T/dq_mem_q.gguf ;;
      dashq-oac) args="--method dashq --curvature oac-token --bits 4 --group 128" o=$T/dq_mem_q ;;
      oac) args="--method oac --bits 4 --group 128" o=$T/dq_mem_q ;;
      convert-hf) args="--format hf --type BF16" o=$T/dq_mem_c ;;
      convert-gguf) args="--type Q8_0" o=$T/dq_mem_c.gguf ;;
      eval-ppl) args="--ppl $CAL --ctx $SEQLEN --chunks $NSAMPLES" o= ;; # NSAMPLES windows of SEQLEN tokens
      *) echo "unknown job $job" >&2; exit 2 ;;
    esac
    rm -rf "$o"
    calib="--calib $CAL --nsamples $NSAMPLES --seqlen $SEQLEN" cmd=quantize tokens=$((NSAMPLES * SEQLEN))
    case $job in convert-*) calib= cmd=convert tokens=0 ;; eval-*) calib= cmd=eval ;; esac
    /usr/bin/time -f "%M %e" -o $T/dq_mem_time $b $cmd "$src" --tokenizer $TOK $args $calib \
      ${o:+-o "$o"} --quiet $EXTRA > $T/dq_mem_log 2>&1 || { tail -3 $T/dq_mem_log; exit 1; }
    read -r kb s < $T/dq_mem_time
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n' "$(date -u +%F)" $commit $b $name "$job${EXTRA:+ $EXTRA}" $tokens \
      $((kb / 1024)) $s | tee -a $out
    rm -rf "$o"
  done
done
