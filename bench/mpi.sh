#!/bin/bash
# One process against N ranks under Open MPI's mpirun on this machine (issue
# #15): wall time, peak RSS (/usr/bin/time; under mpirun the largest rank's),
# the bytes rank 0 sent (all-reduce payloads of the block statistics,
# broadcasts of the codes) and whether the outputs are byte-identical. On one
# 2-core machine, 2 ranks x 1 thread share the cores that 1 process x 2
# threads uses: the speed-up measures what the split costs or saves (the
# forward pass of each rank on half the windows with one thread, against
# OpenMP's two threads on all of them), not more hardware. One line per run is
# appended to results/mpi.tsv. Run alone.
#   bench/mpi.sh                                  # SmolLM2-135M, GPTQ Q4_K_M, 32 x 512 tokens
#   NP=2 JOB="--method dashq --bits 3 --group 128" NSAMPLES=8 bench/mpi.sh
set -u
cd "$(dirname "$0")/.."
DQ=${DQ:-build/dashq} NP=${NP:-2} NSAMPLES=${NSAMPLES:-32} SEQLEN=${SEQLEN:-512}
JOB=${JOB:-"--method gptq --format gguf --type Q4_K_M"}
SHARED=${DASHQ_SHARED:-../shared}
M=$(scripts/models.sh --path smollm2-135m) || exit 1
C=$SHARED/data/gutenberg/calib/gutenberg_calib.txt
T=${TMPDIR:-/tmp}/dq_mpi_bench
rm -rf "$T" && mkdir -p "$T"
ext=; [[ "$JOB" == *gguf* ]] && ext=.gguf
out=results/mpi.tsv
[ -s $out ] || printf 'date\tcommit\tmodel\tjob\tcalib_tokens\tprocs\tthreads_each\twall_s\tpeak_rss_mb\tsent_mb_per_block\tsame_bytes\n' > $out
run() { # procs threads
  local np=$1 th=$2 o="$T/out-$1$ext" launch=()
  [ "$np" -gt 1 ] && launch=(mpirun --oversubscribe -np "$np" -x OMP_NUM_THREADS="$th")
  OMP_NUM_THREADS=$th OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 /usr/bin/time -f "%M %e" -o "$T/time" \
    "${launch[@]}" $DQ quantize "$M" $JOB --calib "$C" --nsamples $NSAMPLES --seqlen $SEQLEN -t "$th" -o "$o" --quiet \
    > "$T/log-$np" 2>&1 || { tail -3 "$T/log-$np"; exit 1; }
  read -r kb s < "$T/time"
  local sent=$(sed -n 's/.*(\([0-9.]*\) MB a block).*/\1/p' "$T/log-$np")
  local same=-; [ "$np" -gt 1 ] && { cmp -s "$T/out-1$ext" "$o" || diff -rq "$T/out-1$ext" "$o" >/dev/null && same=yes || same=NO; }
  printf '%s\t%s\tsmollm2-135m\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$JOB" \
    $((NSAMPLES * SEQLEN)) "$np" "$th" "$s" $((kb / 1024)) "${sent:-0}" "$same" | tee -a $out
}
run 1 2
run "$NP" 1
rm -rf "$T"
