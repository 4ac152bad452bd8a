#ifndef DQ_UTIL_THREADS_H
#define DQ_UTIL_THREADS_H

#include <omp.h>

/* The thread count for a caller that asked for n <= 0: OpenMP's default team size, which is
 * every core unless OMP_NUM_THREADS says otherwise (omp_get_num_procs() ignored it, so
 * `OMP_NUM_THREADS=1 dashq quantize` and one thread per MPI rank still ran on all cores).
 * Outputs do not depend on it: every reduction is in a fixed order. */
static inline int dq_threads_or_default(int n) { return n > 0 ? n : omp_get_max_threads(); }

#endif
