#!/bin/bash
# Peak memory (RSS) and time of `dashq eval --ppl` on big texts, this build
# against another (OLD=/path/to/old/dashq, e.g. a build of main), and
# tokenization speed, whole text against the stream (build/tests/tok_speed).
# The big texts are made in ${TMPDIR:-/tmp} by concatenating ../shared/data
# (never commit them). Results: bench/README.md, "Memory on big texts".
#   OLD=/work/main/build/dashq bench/ppl_memory.sh
set -u
cd "$(dirname "$0")/.."
NEW=${NEW:-build/dashq} OLD=${OLD:-} T=${TMPDIR:-/tmp}
SHARED=${DASHQ_SHARED:-../shared} W=$SHARED/data/wikitext2/wiki.test.raw
S=$(scripts/models.sh --path smollm2-135m 2>/dev/null)
srcs="$W $SHARED/data/gutenberg/eval/*.txt $SHARED/data/gutenberg/calib/gutenberg_calib.txt $SHARED/data/tinystories/*.txt"
if [ ! -f "$T/dq_20mb.txt" ]; then
  while [ "$(stat -c %s "$T/dq_20mb.txt" 2>/dev/null || echo 0)" -lt 20000000 ]; do cat $srcs >> "$T/dq_20mb.txt"; done
fi
[ -f "$T/dq_200mb.txt" ] || for i in 1 2 3 4 5 6 7 8 9 10; do cat "$T/dq_20mb.txt" >> "$T/dq_200mb.txt"; done
run() { /usr/bin/time -f "$1: peak %M KB, %e s wall, %U s user" "${@:2}" 2>&1 | grep -E "peak|perplexity:"; }
echo "== tokenization of wiki.test.raw, whole text vs stream (64 KiB blocks)"
for tok in $SHARED/models/gut6l/tokenizer.bin $SHARED/models/llama2c-tokenizer32k/tokenizer.bin ${S:+"$S"} \
           $SHARED/models/tokenizers/qwen2-1.5b-instruct/vocab.json; do
  echo "-- $tok"; build/tests/tok_speed "$tok" "$W" both
done
for b in $NEW $OLD; do
  echo "== $b"
  [ -n "$S" ] && run "SmolLM2, wiki.test.raw, --ctx 512 --chunks 2" $b eval "$S" --ppl "$W" --ctx 512 --chunks 2 --quiet
  run "gut6l, 200 MB, --chunks 2" timeout 1800 $b eval $SHARED/models/gut6l/gut6l.bin --ppl "$T/dq_200mb.txt" --chunks 2 --quiet
  # a full run takes hours on 2 cores: stopped after 240 s (the old path peaks while tokenizing, before scoring)
  run "stories260K, 20 MB, full run (stopped at 240 s)" timeout -s INT 240 $b eval $SHARED/models/stories260K/stories260K.bin --ppl "$T/dq_20mb.txt" --quiet
done
