/* HeRo-Q's learned smoothing (issue #17): see hero.c for the objective and
 * how it is minimised. */
#ifndef DQ_HERO_H
#define DQ_HERO_H
#include "transform/transform.h"

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
