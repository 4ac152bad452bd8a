#!/usr/bin/env bash
# CTest `mpi` (issue #15): `mpirun -np 2|3 --oversubscribe dashq quantize`
# writes the bytes one process writes (GPTQ packed, a GGUF mixture with
# DASH-Q, OAC with its gradient pass); ranks started with other options are
# refused; a rank killed by SIGKILL after block 3 ends the job without an
# output, and the same command with --resume finishes it to the same bytes.
# Skips (77) without mpirun or a dashq built with Open MPI.
#   mpi.sh DASHQ DIST_KILL SHARED_DIR
set -uo pipefail
DQ=$1 KILL=$2 SHARED=${DASHQ_SHARED:-$3}
command -v mpirun >/dev/null || { echo "no mpirun (Debian: openmpi-bin): skipped"; exit 77; }
"$DQ" --version | grep -q MPI || { echo "$DQ was built without Open MPI: skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
# under ASan: Open MPI's own allocations live until exit and LeakSanitizer
# would report them; every other check stays on
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
M=$SHARED/models/gut6l-hf C=$SHARED/data/gutenberg/calib/gutenberg_calib.txt
MPI="timeout 600 mpirun --oversubscribe"
fail=0
same() { # name np args...: one process against np ranks
  local name=$1 np=$2; shift 2
  local ext=; [[ "$*" == *gguf* ]] && ext=.gguf
  "$DQ" quantize "$M" "$@" --calib "$C" --nsamples 7 --seqlen 128 --quiet -o "$W/$name-1$ext" > "$W/$name-1.txt" 2>&1 ||
    { echo "FAIL $name: one process: $(tail -1 "$W/$name-1.txt")"; fail=1; return; }
  $MPI -np "$np" "$DQ" quantize "$M" "$@" --calib "$C" --nsamples 7 --seqlen 128 --quiet -o "$W/$name-$np$ext" \
    > "$W/$name-$np.txt" 2>&1 || { echo "FAIL $name: $np ranks: $(grep error "$W/$name-$np.txt" | head -1)"; fail=1; return; }
  if diff -r "$W/$name-1$ext" "$W/$name-$np$ext" >/dev/null &&
     diff <(awk '$1 ~ /^model/ {print $1, $3}' "$W/$name-1.txt") <(awk '$1 ~ /^model/ {print $1, $3}' "$W/$name-$np.txt") >/dev/null
  then echo "ok $name: $np ranks wrote the bytes (and reported the errors) of one process; $(grep '^ranks' "$W/$name-$np.txt")"
  else echo "FAIL $name: $np ranks differ from one process"; fail=1; fi
}
same gptq 2 --method gptq --bits 3 --group 64
same gptq-act-order 3 --method gptq --bits 4 --group 32 --act-order
same dashq-Q4_K_M 3 --method dashq --format gguf --type Q4_K_M
same oac 2 --method oac --bits 3 --group 64

# other options on rank 1: refused, every rank stops, no output
A=(quantize "$M" --method gptq --group 64 --calib "$C" --nsamples 4 --seqlen 128 --quiet -o "$W/mismatch")
$MPI -np 1 "$DQ" "${A[@]}" --bits 3 : -np 1 "$DQ" "${A[@]}" --bits 4 > "$W/mismatch.txt" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "rank 1 of 2 has other inputs or options" "$W/mismatch.txt" && [ ! -e "$W/mismatch" ]; then
  echo "ok mismatched ranks refused (exit $rc)"
else echo "FAIL mismatched ranks: exit $rc: $(head -3 "$W/mismatch.txt")"; fail=1; fi

# rank 1 dies after block 3; --resume finishes the job to one process's bytes
"$DQ" quantize "$M" --method gptq --bits 3 --group 64 --calib "$C" --nsamples 6 --seqlen 128 --quiet -o "$W/ref" > /dev/null 2>&1
$MPI -np 2 "$KILL" "$M" "$C" "$W/killed" 1 3 > "$W/killed.txt" 2>&1
rc=$?
if [ $rc -eq 0 ] || [ -e "$W/killed" ] || [ ! -f "$W/killed.resume/state.json" ]; then
  echo "FAIL killed rank: exit $rc, output $(ls -d "$W/killed" 2>/dev/null), state $(ls "$W/killed.resume" 2>/dev/null | tr '\n' ' ')"
  fail=1
else
  $MPI -np 2 "$DQ" quantize "$M" --method gptq --bits 3 --group 64 --calib "$C" --nsamples 6 --seqlen 128 --quiet \
    --resume -o "$W/killed" > "$W/resumed.txt" 2>&1
  if diff -r "$W/ref" "$W/killed" >/dev/null && [ ! -e "$W/killed.resume" ]; then
    echo "ok a rank killed after block 3: no output; --resume on 2 ranks finished it to one process's bytes"
  else echo "FAIL resumed after a killed rank: $(grep -i error "$W/resumed.txt" | head -2)"; fail=1; fi
fi
exit $fail
