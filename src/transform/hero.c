/* HeRo-Q's learned smoothing (Zhang et al., arXiv 2601.21626; the paper's
 * code is not public, so this is the reconstruction of
 * ../shared/specs/ALGORITHMS.md §3.2, marked INFERRED there): for the input
 * of every group of linears (q/k/v, gate/up, down) of every block, positive
 * per-channel scales s = e^u, folded as the closed smoothing is (W ← W Λ,
 * input ← Λ⁻¹ x), are learned to minimise
 *
 *   J(u) = E(u) / E(0) + β · ρ(u) / ρ(0),
 *   E(u) = Σ_readers tr((W − Ŵ_u) H (W − Ŵ_u)ᵀ),  Ŵ_u = RTN(W Λ) Λ⁻¹,
 *   ρ(u) = λ_max(H_u) / (tr(H_u)/n),              H_u = Λ⁻¹ H Λ⁻¹,
 *
 * H the input's mean Hessian XXᵀ/T from the calibration windows: the output
 * error of round-to-nearest in the quantizer's own grid (bits, groups) plus
 * the scale-free spectral concentration of the effective Hessian the
 * quantizer then sees, the "sharp directions" HeRo-Q aims to flatten (a plain
 * rescale moves neither term). Gradients: ρ by the eigenvector of a warm-
 * started power iteration (∂λ/∂u_j = −2λv_j²); E with rounding passed straight
 * through and the group step's dependence on its extreme weights kept (as
 * LSQ / OmniQuant do), E measured on at most hero_rows (128) evenly spaced
 * rows of the stacked readers. Adam on u, mean(u) held at 0, the best iterate kept:
 * J never ends above J(0) = 1 + β, i.e. the identity. Blocks go in order on
 * the full-precision model (its outputs do not depend on the scales), one
 * block's windows in memory. */
#include "transform/hero.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "transform/block_stats.h"
#include "transform/fold.h"
#include "util/error.h"
#include "util/progress.h"

#define TILE 64

/* One group of linears reading one input: their rows stacked, (rows, n). */
typedef struct {
    int n, rows, group, maxq;
    const float *W; /* (rows, n) */
    const float *H; /* (n, n) mean input Hessian */
    float *Wp, *D, *G; /* scratch (rows, n): W Λ, W − Ŵ, D H */
    double *v, *hv;    /* (n) power-iteration vector */
    int nt;
} problem;

/* E(u) and, if grad, ∂E/∂u (n). */
static double quant_error(problem *p, const double *u, double *grad) {
    int n = p->n, g = p->group > 0 ? p->group : n;
    double *s = malloc((size_t)n * sizeof *s);
    for (int j = 0; j < n; j++) s[j] = exp(u[j]);
    /* forward: D = W − RTN(W Λ) Λ⁻¹, with GPTQ's asymmetric min-max grid (0 inside the range) */
#pragma omp parallel for num_threads(p->nt) schedule(static)
    for (int i = 0; i < p->rows; i++)
        for (int c0 = 0; c0 < n; c0 += g) {
            int c1 = c0 + g < n ? c0 + g : n;
            float *wp = p->Wp + (size_t)i * n;
            for (int j = c0; j < c1; j++) wp[j] = p->W[(size_t)i * n + j] * (float)s[j];
            dq_rtn_group q = dq_rtn_group_of(wp + c0, c1 - c0, p->maxq);
            for (int j = c0; j < c1; j++) {
                float e = dq_rtn_code(&q, wp[j], p->maxq) - q.zero - wp[j] / q.step; /* rounding residual, in steps */
                p->D[(size_t)i * n + j] = -q.step * e / (float)s[j];
            }
        }
    /* G = D H by fixed row tiles (the same at any thread count); E = Σ D∘G */
    int tiles = (p->rows + TILE - 1) / TILE;
#pragma omp parallel for num_threads(p->nt) schedule(static)
    for (int t = 0; t < tiles; t++) {
        int r0 = t * TILE, nr = p->rows - r0 < TILE ? p->rows - r0 : TILE;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, n, n, 1.0f, p->D + (size_t)r0 * n, n, p->H, n, 0.0f,
                    p->G + (size_t)r0 * n, n);
    }
    double E = 0;
    for (size_t k = 0; k < (size_t)p->rows * n; k++) E += (double)p->D[k] * p->G[k];
    if (grad) {
        /* d_ij = −step·ε_ij/s_j: directly ∂d/∂u_j = −d_ij; through the step,
         * ∂step/∂u at the group's extremes ±w's/maxq (0 when 0 is the bound) */
        memset(grad, 0, (size_t)n * sizeof *grad);
        for (int i = 0; i < p->rows; i++)
            for (int c0 = 0; c0 < n; c0 += g) {
                int c1 = c0 + g < n ? c0 + g : n;
                dq_rtn_group q = dq_rtn_group_of(p->Wp + (size_t)i * n + c0, c1 - c0, p->maxq);
                double dstep = 0; /* ∂E/∂step of the group */
                for (int j = c0; j < c1; j++) {
                    double gij = 2.0 * p->G[(size_t)i * n + j], d = p->D[(size_t)i * n + j];
                    grad[j] += gij * -d;
                    dstep += gij * d / q.step;
                }
                if (q.jhi >= 0) grad[c0 + q.jhi] += dstep * q.hi / p->maxq;
                if (q.jlo >= 0) grad[c0 + q.jlo] -= dstep * q.lo / p->maxq;
            }
    }
    free(s);
    return E;
}

double dq_hero_rho(const float *H, int n, const double *u, double *v, double *tmp, int iters, double *grad) {
    double tr = 0, lam = 0;
    for (int j = 0; j < n; j++) tr += H[(size_t)j * n + j] * exp(-2 * u[j]);
    for (int it = 0; it < iters; it++) {
        for (int j = 0; j < n; j++) tmp[j] = v[j] * exp(-u[j]);
        double norm = 0;
        for (int i = 0; i < n; i++) {
            double acc = 0;
            for (int j = 0; j < n; j++) acc += (double)H[(size_t)i * n + j] * tmp[j];
            v[i] = acc * exp(-u[i]); /* H_u v, unnormalised */
        }
        for (int j = 0; j < n; j++) norm += v[j] * v[j];
        lam = sqrt(norm);
        for (int j = 0; j < n; j++) v[j] = lam > 0 ? v[j] / lam : 1.0 / sqrt(n);
    }
    double rho = tr > 0 ? lam / (tr / n) : 0;
    if (grad)
        for (int j = 0; j < n; j++) grad[j] = tr > 0 ? 2 * rho * (H[(size_t)j * n + j] * exp(-2 * u[j]) / tr - v[j] * v[j]) : 0;
    return rho;
}

static double concentration(problem *p, const double *u, int iters, double *grad) {
    return dq_hero_rho(p->H, p->n, u, p->v, p->hv, iters, grad);
}

/* Learns u for one problem; returns it in u (n), the objective's parts in r. */
static void learn(problem *p, const dq_transform_opts *o, double *u, dq_hero_stats *r) {
    int n = p->n;
    double *m1 = calloc((size_t)n, sizeof *m1), *m2 = calloc((size_t)n, sizeof *m2);
    double *gE = malloc((size_t)n * sizeof *gE), *gR = malloc((size_t)n * sizeof *gR);
    double *best = malloc((size_t)n * sizeof *best);
    for (int j = 0; j < n; j++) u[j] = 0, p->v[j] = 1.0 / sqrt(n);
    concentration(p, u, 50, NULL); /* converge the vector once */
    double E0 = quant_error(p, u, NULL), R0 = concentration(p, u, 20, NULL);
    double Jbest = INFINITY, Ebest = E0, Rbest = R0;
    const double b1 = 0.9, b2 = 0.999, beta = o->hero_beta;
    for (int step = 0; step <= o->hero_steps; step++) {
        double E = quant_error(p, u, gE), R = concentration(p, u, 5, gR);
        double J = (E0 > 0 ? E / E0 : 0) + beta * (R0 > 0 ? R / R0 : 0);
        if (J < Jbest) Jbest = J, Ebest = E, Rbest = R, memcpy(best, u, (size_t)n * sizeof *u);
        if (step == o->hero_steps) break;
        double mean = 0;
        for (int j = 0; j < n; j++) {
            double gj = (E0 > 0 ? gE[j] / E0 : 0) + beta * (R0 > 0 ? gR[j] / R0 : 0);
            m1[j] = b1 * m1[j] + (1 - b1) * gj;
            m2[j] = b2 * m2[j] + (1 - b2) * gj * gj;
            double mh = m1[j] / (1 - pow(b1, step + 1)), vh = m2[j] / (1 - pow(b2, step + 1));
            u[j] -= o->hero_lr * mh / (sqrt(vh) + 1e-12);
            mean += u[j];
        }
        for (int j = 0; j < n; j++) u[j] -= mean / n; /* geometric mean of s stays 1 */
    }
    memcpy(u, best, (size_t)n * sizeof *u);
    r->err_ratio += E0 > 0 ? Ebest / E0 : 1;
    r->rho_before += R0, r->rho_after += Rbest, r->n++;
    free(m1), free(m2), free(gE), free(gR), free(best);
}

/* ---- per block: learn each input's scales from its Hessian ---- */

static dq_status learn_input(dq_model *m, int l, int k, const float *H, dq_transform_opts *o, dq_error *err) {
    dq_tap tap = DQ_BS_TAPS[k];
    int rows, n = k == DQ_BS_FFN_HIDDEN ? m->cfg.hidden_dim : m->cfg.dim;
    float *W = dq_stack_readers(m, l, tap, o->hero_rows, &rows);
    size_t rn = (size_t)rows * n;
    problem p = {.n = n, .rows = rows, .group = o->group, .maxq = (1 << o->bits) - 1, .W = W, .H = H, .nt = o->n_threads,
                 .Wp = malloc(rn * sizeof(float)), .D = malloc(rn * sizeof(float)), .G = malloc(rn * sizeof(float)),
                 .v = malloc((size_t)n * sizeof(double)),
                 .hv = malloc((size_t)n * sizeof(double))};
    double *u = malloc((size_t)n * sizeof *u);
    float *s = malloc((size_t)n * sizeof *s);
    dq_status st = W && p.Wp && p.D && p.G && p.v && p.hv && u && s
                       ? DQ_OK
                       : dq_fail(err, DQ_ERR_NOMEM, "block %d: out of memory for HeRo-Q's scales", l);
    if (!st) {
        learn(&p, o, u, &o->hero);
        for (int j = 0; j < n; j++) s[j] = (float)exp(u[j]);
        st = dq_scale_inputs(m, l, tap, s, err);
    }
    free(W), free(p.Wp), free(p.D), free(p.G), free(p.v), free(p.hv), free(u), free(s);
    return st;
}

static dq_status smooth_block(void *ctx, dq_model *m, int layer, float *const H[DQ_BS_ALL], dq_error *err) {
    dq_transform_opts *o = ctx;
    dq_status st = DQ_OK;
    for (int k = 0; !st && k < DQ_BS_COUNT; k++) st = learn_input(m, layer, k, H[k], o, err);
    return st;
}

dq_status dq_hero_smooth(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err) {
    unsigned inputs = DQ_BS_BIT(DQ_BS_ATTN_IN) | DQ_BS_BIT(DQ_BS_FFN_IN) | DQ_BS_BIT(DQ_BS_FFN_HIDDEN);
    dq_status st = dq_block_hessians(m, cs, inputs, o->n_threads, &o->progress, smooth_block, o, err);
    if (o->hero.n) {
        o->hero.err_ratio /= o->hero.n;
        o->hero.rho_before /= o->hero.n, o->hero.rho_after /= o->hero.n;
    }
    return st;
}
