/* Several processes quantizing one model (issue #15): ranks split the
 * calibration windows, run the forward pass on their share, add up the
 * statistics, split the linear layers of a block for the solve and share
 * the codes; rank 0 writes. A dq_comm is the group; NULL (or size 1) is one
 * process, and every call below is then a no-op, so the pipeline has one
 * code path. With Open MPI (DQ_HAVE_MPI) the group is MPI_COMM_WORLD.
 *
 * Determinism: statistics are double-double sums that are exact (see
 * calib/pipeline.c), so adding the ranks' shares in any order gives the
 * bytes of one process; per-window numbers (output errors) travel per
 * window and are added in window order by every rank. */
#ifndef DQ_COMM_H
#define DQ_COMM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dashq.h"

/* dq_comm, dq_comm_init, _rank, _size, _bytes_sent, _abort, _finalize:
 * dashq.h */
static inline bool dq_comm_root(const dq_comm *c) { return dq_comm_rank(c) == 0; }

/* Windows [*w0, *w1) of n are this rank's: contiguous, balanced. */
void dq_comm_share(const dq_comm *c, int n, int *w0, int *w1);

/* Every rank's st after a step it ran on its own: the first failing rank's
 * status and message go to every rank (so all stop together, and rank 0 can
 * say what went wrong where); DQ_OK when none failed. Call it on every rank
 * at the same point. */
dq_status dq_comm_agree(const dq_comm *c, dq_status st, dq_error *err);

/* Element-wise exact sum over ranks of n double-double pairs (hi, lo): the
 * result on every rank. *inexact (or'ed over ranks) when a sum rounded. */
dq_status dq_comm_sum_dd(const dq_comm *c, double *pairs, size_t n, bool *inexact, dq_error *err);

/* Element-wise sum over ranks of n doubles where each entry is non-zero on
 * at most one rank (per-window values): exact, the result on every rank. */
dq_status dq_comm_merge(const dq_comm *c, double *v, size_t n, dq_error *err);

/* bytes from root to every rank. */
dq_status dq_comm_bcast(const dq_comm *c, void *buf, size_t bytes, int root, dq_error *err);

/* Whether every rank has the same 64-bit fingerprint of its inputs and
 * options; else an error naming the first rank that differs from rank 0. */
dq_status dq_comm_same(const dq_comm *c, uint64_t fingerprint, const char *what, dq_error *err);

#endif
