/* Exact sums in double-double (hi, lo), the statistics' accumulator
 * (calib/pipeline.c) and the ranks' reduction (dist/comm.c). A sum of terms
 * held this way is the exact sum while its terms span under ~2^100 (fp32
 * terms of one Hessian entry would have to differ by 2^70), so hi — the
 * correctly rounded sum — does not depend on the order they came in: any
 * thread count, any number of ranks adding partial sums. A rounding is
 * detected and reported instead of silently giving order-dependent bytes.
 * Needs IEEE double without reassociation (no -ffast-math). */
#ifndef DQ_DD_H
#define DQ_DD_H
#include <stdbool.h>

/* (hi, lo) = e2[0], e2[1] += v: Knuth's TwoSum of hi and v, its error into
 * lo (the one step that can round: *inexact), then TwoSum again so that
 * hi = fl(hi + lo): the pair is canonical, a function of the exact value. */
static inline void dq_dd_add(double *e2, double v, bool *inexact) {
    double hi = e2[0], lo = e2[1];
    double s = hi + v, bv = s - hi, e = (hi - (s - bv)) + (v - bv);
    double t = lo + e, bt = t - lo;
    if ((lo - (t - bt)) + (e - bt) != 0) *inexact = true;
    double h = s + t, bh = h - s;
    e2[0] = h;
    e2[1] = (s - (h - bh)) + (t - bh);
}

/* a += b for two pairs (a partial sum from another rank). */
static inline void dq_dd_merge(double *a, const double *b, bool *inexact) {
    dq_dd_add(a, b[0], inexact);
    dq_dd_add(a, b[1], inexact);
}
#endif
