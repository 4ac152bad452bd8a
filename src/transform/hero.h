/* HeRo-Q's learned smoothing (issue #17): see hero.c for the objective and
 * how it is minimised. */
#ifndef DQ_HERO_H
#define DQ_HERO_H
#include <lapacke.h>
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
/* The learned residual rotations, dq_rotation_info.learn rows: against the
 * RTN error in the Hessian norm (hero_rotate.c) and against the quantized
 * model's loss through the backward pass (hero_loss.c: next-token
 * cross-entropy, or KL divergence from the full-precision model). */
dq_status dq_hero_learn_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err);
/* HeRo-Q's R2: every block's head rotation learned from P0 (head_dim²,
 * made by the rotation's row) against o_proj's RTN error in its input
 * Hessian norm, and folded in (hero_rotate.c); o->hero.r2_err_ratio the
 * mean over blocks of learned / start. */
dq_status dq_hero_learn_heads(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, const float *P0,
                              dq_error *err);
dq_status dq_hero_loss_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err);
dq_status dq_hero_kl_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err);
/* The loss learner's Euclidean gradient G (dim x dim) = ∂ℓ_w/∂R and ℓ_w on
 * window w of cs at R (norms folded; m left as it was), for tests. */
dq_status dq_hero_loss_gradient(dq_model *m, const dq_calib_set *cs, const dq_transform_opts *o, const float *R,
                                bool distill, int w, double *loss, float *G, dq_error *err);
/* R ← (I + ηA/2)⁻¹(I − ηA/2) R with A = G Rᵀ − R Gᵀ and η = lr/‖A‖_F (a
 * step of about lr radians along the Euclidean gradient G's projection on
 * the orthogonal group; Wen & Yin 2013), in double; A, B, C: n² doubles of
 * scratch, piv: n. False when the solve fails. */
bool dq_cayley_step(float *R, const float *G, int n, double lr, double *A, double *B, double *C, lapack_int *piv);
double dq_hero_rho(const float *H, int n, const double *u, double *v, double *tmp, int iters, double *grad);
#endif
