#!/usr/bin/env bash
# dashq's zero-shot scoring against lm-evaluation-harness itself (issue #12): the same weights (the SmolLM2 Q4_1
# GGUF, exported by `dashq convert --format hf` in F32), the same first LIMIT items of each task (turned back
# into the Hugging Face data sets' fields from the files dashq reads: bench/harness_crosscheck.py), the harness's
# own templates, and a per-item comparison of log-likelihoods and predictions.
#
#   bench/harness_crosscheck.sh          (LIMIT [200], THREADS [1] per process, BATCH [8])
#
# Needs PyPI only (no model or data-set hub): a venv in $DASHQ_CACHE/lmeval-venv with lm_eval 0.4.13,
# transformers 4.45.2 (the newest that reads our tokenizer.json's merge pairs and still runs on Debian's
# torch 1.13), accelerate 0.34.2, datasets 3.6 / pyarrow 20 (numpy 1.x for that torch). Work files (the HF
# export, 540 MB; the task files; the harness's samples) go to $WORK. Writes $OUT.csv (per task, harness vs
# dashq) and $OUT.txt (every item they disagree on, with both log-likelihoods). A benchmark, not CI: at
# LIMIT=200 the harness runs ~250k tokens through a 135M model without prefix sharing (minutes on an idle
# 2-core machine, far longer on a busy one).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/models.sh
LIMIT=${LIMIT:-200}
THREADS=${THREADS:-1}
BATCH=${BATCH:-8}
CACHE=${DASHQ_CACHE:-$HOME/.cache/dashq}
VENV=${VENV:-$CACHE/lmeval-venv}
WORK=${WORK:-$CACHE/harness-crosscheck}
OUT=${OUT:-results/smollm2_harness_crosscheck}
DATA=$(realpath "$SHARED/data")
TASKS=piqa,arc_easy,arc_challenge,hellaswag,winogrande,boolq,lambada
read -r MODEL _ <<<"$(model_spec smollm2-135m)"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_CACHE=$WORK/hf-datasets

if ! "$VENV/bin/python" -c 'import lm_eval, accelerate, transformers' 2>/dev/null; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q lm_eval==0.4.13 transformers==4.45.2 'tokenizers>=0.20,<0.21' accelerate==0.34.2 \
    'datasets>=3.6,<4' 'pyarrow>=17,<21' 'numpy<2'
fi
build_dashq
mkdir -p "$WORK" "$(dirname "$OUT")"
[ -f "$WORK/hf/model.safetensors" ] || build/dashq convert "$MODEL" --format hf -o "$WORK/hf"

# The harness: its templates, data from the files dashq reads (task names get a _dq suffix).
"$VENV/bin/python" bench/harness_crosscheck.py tasks "$DATA" "$WORK/tasks" "$LIMIT"
rm -rf "$WORK/harness"
"$VENV/bin/lm_eval" --model hf --model_args "pretrained=$WORK/hf,dtype=float32" --device cpu \
  --tasks "$(sed 's/,/_dq,/g; s/$/_dq/' <<<"$TASKS")" --include_path "$WORK/tasks" --limit "$LIMIT" \
  --batch_size "$BATCH" --log_samples --output_path "$WORK/harness" 2>"$WORK/harness.log" | tee "$WORK/harness_table.txt"

# dashq on the same items, one JSON line per item (--items).
build/dashq eval "$MODEL" --tasks "$TASKS" --limit "$LIMIT" --data-dir "$DATA" --json --quiet -t "$THREADS" \
  --items "$WORK/dashq_items.jsonl" | tee "$WORK/dashq.jsonl"
# HellaSwag with the harness's ctx_b.capitalize() redone on a guessed ctx_a/ctx_b split (llama.cpp's text
# format joined them): what the split costs.
"$VENV/bin/python" bench/harness_crosscheck.py capb "$DATA" "$WORK/capdata" "$LIMIT"
build/dashq eval "$MODEL" --tasks hellaswag --limit "$LIMIT" --data-dir "$WORK/capdata" --json --quiet -t "$THREADS" \
  --items "$WORK/dashq_capb_items.jsonl"

"$VENV/bin/python" bench/harness_crosscheck.py compare "$WORK/harness" "$WORK/dashq_items.jsonl" "$OUT.csv" "$OUT.txt" \
  "$WORK/dashq_capb_items.jsonl"
{
  echo "# versions: $("$VENV/bin/python" -c 'import lm_eval, transformers, torch, tokenizers, datasets
print("lm_eval", lm_eval.__version__, "transformers", transformers.__version__, "torch", torch.__version__,
      "tokenizers", tokenizers.__version__, "datasets", datasets.__version__)' 2>/dev/null); dashq $(git rev-parse --short HEAD)"
  echo "# model: $(basename "$MODEL") exported by dashq convert --format hf (F32); LIMIT=$LIMIT; no BOS on either side"
  echo "# harness table:"
  sed 's/^/#   /' "$WORK/harness_table.txt"
} >>"$OUT.txt"
