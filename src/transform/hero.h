/* HeRo-Q's learned smoothing (issue #17): see hero.c for the objective and
 * how it is minimised. */
#ifndef DQ_HERO_H
#define DQ_HERO_H
#include <math.h>

#include "transform/transform.h"

/* One group w[0..len) on GPTQ's asymmetric min-max grid with 0 kept inside
 * the range (the quantizer's dq_minmax_params; an all-zero group gets step
 * 1), as both learners' objective rounds it: the step and zero, and where the
 * extremes that set the step sit (-1 where 0 is the bound), through which
 * the step's gradient flows. */
typedef struct {
    float lo, hi, step, zero;
    int jlo, jhi;
} dq_rtn_group;

static inline dq_rtn_group dq_rtn_group_of(const float *w, int len, int maxq) {
    dq_rtn_group g = {0, 0, 1, 0, -1, -1};
    for (int j = 0; j < len; j++) {
        if (w[j] < g.lo) g.lo = w[j], g.jlo = j;
        if (w[j] > g.hi) g.hi = w[j], g.jhi = j;
    }
    if (g.hi > g.lo) g.step = (g.hi - g.lo) / (float)maxq;
    g.zero = rintf(-g.lo / g.step);
    return g;
}

/* w's integer code on that grid. */
static inline float dq_rtn_code(const dq_rtn_group *g, float w, int maxq) {
    return fminf(fmaxf(rintf(w / g->step) + g->zero, 0), (float)maxq);
}

/* Scales for every block's q/k/v, gate/up and down inputs, learned on the
 * windows of cs and folded in (transform/fold.h); o->hero receives the means
 * over those inputs; progress: stage "transform", one unit per block. */
dq_status dq_hero_smooth(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err);
/* ρ(u) = λ_max(H_u) / (tr(H_u)/n), H_u = diag(e^-u) H diag(e^-u) (H: n x n,
 * symmetric), by `iters` power iterations from v (n, unit; left at the
 * eigenvector estimate); tmp: n doubles; grad (n, may be NULL): ∂ρ/∂u =
 * 2ρ(diag(H_u)/tr(H_u) − v²), exact once v is the top eigenvector. */
/* The learned residual rotation (hero_rotate.c), a dq_rotation_info.learn. */
dq_status dq_hero_learn_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err);
double dq_hero_rho(const float *H, int n, const double *u, double *v, double *tmp, int iters, double *grad);
#endif
