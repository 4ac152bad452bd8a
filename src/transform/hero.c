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

#include "model/forward.h"
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
    float *eps;        /* (rows, n) rounding residual of the current forward */
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
            float lo = 0, hi = 0;
            for (int j = c0; j < c1; j++) {
                float w = p->W[(size_t)i * n + j] * (float)s[j];
                p->Wp[(size_t)i * n + j] = w;
                lo = fminf(lo, w), hi = fmaxf(hi, w);
            }
            float step = hi > lo ? (hi - lo) / (float)p->maxq : 1.0f, zero = rintf(-lo / step);
            for (int j = c0; j < c1; j++) {
                float w = p->Wp[(size_t)i * n + j], q = fminf(fmaxf(rintf(w / step) + zero, 0), (float)p->maxq);
                float e = q - zero - w / step; /* rounding residual, in steps */
                p->eps[(size_t)i * n + j] = e;
                p->D[(size_t)i * n + j] = -step * e / (float)s[j];
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
                int c1 = c0 + g < n ? c0 + g : n, jlo = -1, jhi = -1;
                float lo = 0, hi = 0;
                double dstep = 0; /* ∂E/∂step of the group */
                for (int j = c0; j < c1; j++) {
                    float w = p->Wp[(size_t)i * n + j];
                    if (w < lo) lo = w, jlo = j;
                    if (w > hi) hi = w, jhi = j;
                }
                float step = hi > lo ? (hi - lo) / (float)p->maxq : 1.0f;
                for (int j = c0; j < c1; j++) {
                    double gij = 2.0 * p->G[(size_t)i * n + j], d = p->D[(size_t)i * n + j];
                    grad[j] += gij * -d;
                    dstep += gij * d / step;
                }
                if (jhi >= 0) grad[jhi] += dstep * hi / p->maxq;
                if (jlo >= 0) grad[jlo] -= dstep * lo / p->maxq;
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

/* ---- the calibration side: block inputs' Hessians, block by block ---- */

static const dq_tap LEARNED[] = {DQ_TAP_ATTN_IN, DQ_TAP_FFN_IN, DQ_TAP_FFN_HIDDEN};
enum { N_LEARNED = 3 };

typedef struct {
    int n[N_LEARNED];
    double *sum[N_LEARNED]; /* (n, n) Σ x xᵀ */
    size_t tokens;
    int nt;
} hess_ctx;

static int slot_of(dq_tap t) { return t == DQ_TAP_ATTN_IN ? 0 : t == DQ_TAP_FFN_IN ? 1 : 2; }

static bool want(void *ctx, int layer, dq_tap tap) {
    (void)ctx, (void)layer;
    return tap == DQ_TAP_ATTN_IN || tap == DQ_TAP_FFN_IN || tap == DQ_TAP_FFN_HIDDEN;
}

static void observe(void *ctx, const dq_tap_data *d) {
    hess_ctx *h = ctx;
    int k = slot_of(d->tap), n = d->cols;
    double *S = h->sum[k];
    if (k == 0) h->tokens += (size_t)d->T;
    /* Σ x xᵀ (all of it) by row tiles, one single-threaded sgemm each, added in double */
    int tiles = (n + TILE - 1) / TILE;
#pragma omp parallel for num_threads(h->nt) schedule(static)
    for (int t = 0; t < tiles; t++) {
        int r0 = t * TILE, nr = n - r0 < TILE ? n - r0 : TILE;
        float *tmp = malloc((size_t)nr * n * sizeof *tmp);
        if (!tmp) continue; /* counted as no curvature: the scales stay 1 there */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nr, n, d->T, 1.0f, d->x + r0, n, d->x, n, 0.0f, tmp, n);
        for (size_t k2 = 0; k2 < (size_t)nr * n; k2++) S[(size_t)r0 * n + k2] += tmp[k2];
        free(tmp);
    }
}

/* Rows of every linear reading tap in block l, stacked (rows, n); at most
 * cap of them (0: all), evenly spaced over the stack: the objective's cost is
 * rows·n² per step, and down_proj alone (SmolLM2: 576 x 1536²) would make it
 * ~6 TFLOP for 40 steps over 30 blocks. */
static float *stack_readers(const dq_model *m, int l, dq_tap tap, int cap, int *rows) {
    dq_tap_data d = dq_tap_make(l, tap, NULL, 0, 0);
    int total = 0, n = 0;
    for (int i = 0; i < d.n_sites; i++) {
        int r, c;
        dq_site_shape(d.sites[i], &m->cfg, &r, &c);
        total += r, n = c;
    }
    float *W = malloc((size_t)total * n * sizeof *W);
    for (int i = 0, at = 0; W && i < d.n_sites; i++) {
        int r, c;
        dq_site_shape(d.sites[i], &m->cfg, &r, &c);
        memcpy(W + (size_t)at * n, dq_site_data(m, l, d.sites[i]), (size_t)r * c * sizeof *W);
        at += r;
    }
    if (W && cap > 0 && total > cap) {
        for (int k = 0; k < cap; k++) /* row k·total/cap ≥ k: moving forward never overwrites a row still needed */
            memmove(W + (size_t)k * n, W + ((size_t)k * total / cap) * n, (size_t)n * sizeof *W);
        total = cap;
    }
    *rows = total;
    return W;
}

static dq_status learn_tap(dq_model *m, int l, dq_tap tap, const hess_ctx *h, const dq_transform_opts *o,
                           dq_hero_stats *r, dq_error *err) {
    int k = slot_of(tap), n = h->n[k], rows;
    float *W = stack_readers(m, l, tap, o->hero_rows, &rows), *H = malloc((size_t)n * n * sizeof *H);
    size_t rn = (size_t)rows * n;
    problem p = {.n = n, .rows = rows, .group = o->group, .maxq = (1 << o->bits) - 1, .W = W, .H = H, .nt = o->n_threads,
                 .Wp = malloc(rn * sizeof(float)), .D = malloc(rn * sizeof(float)), .G = malloc(rn * sizeof(float)),
                 .eps = malloc(rn * sizeof(float)), .v = malloc((size_t)n * sizeof(double)),
                 .hv = malloc((size_t)n * sizeof(double))};
    double *u = malloc((size_t)n * sizeof *u);
    float *s = malloc((size_t)n * sizeof *s);
    dq_status st = W && H && p.Wp && p.D && p.G && p.eps && p.v && p.hv && u && s
                       ? DQ_OK
                       : dq_fail(err, DQ_ERR_NOMEM, "block %d: out of memory for HeRo-Q's scales", l);
    if (!st) {
        double inv = h->tokens ? 1.0 / (double)h->tokens : 0;
        for (size_t i = 0; i < (size_t)n * n; i++) H[i] = (float)(h->sum[k][i] * inv);
        learn(&p, o, u, r);
        for (int j = 0; j < n; j++) s[j] = (float)exp(u[j]);
        st = dq_scale_inputs(m, l, tap, s, err);
    }
    free(W), free(H), free(p.Wp), free(p.D), free(p.G), free(p.eps), free(p.v), free(p.hv), free(u), free(s);
    return st;
}

dq_status dq_hero_smooth(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err) {
    const dq_config *c = &m->cfg;
    size_t hs = (size_t)cs->n * cs->len * c->dim;
    float *X = malloc(hs * sizeof *X);
    hess_ctx h = {.n = {c->dim, c->dim, c->hidden_dim}, .nt = o->n_threads};
    for (int k = 0; k < N_LEARNED; k++) h.sum[k] = malloc((size_t)h.n[k] * h.n[k] * sizeof(double));
    dq_session *s = NULL;
    dq_status st = X && h.sum[0] && h.sum[1] && h.sum[2] ? dq_session_new(m, cs->len, cs->len, o->n_threads, &s, err)
                                                         : dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q");
    for (size_t i = 0; !st && i < (size_t)cs->n * cs->len; i++) {
        int32_t t = cs->tokens[i];
        if (t < 0 || t >= c->vocab_size) st = dq_fail(err, DQ_ERR_ARG, "calibration token %d is outside the model's vocabulary", t);
        else memcpy(X + i * c->dim, m->tok_embeddings + (size_t)t * c->dim, (size_t)c->dim * sizeof *X);
    }
    memset(&o->hero, 0, sizeof o->hero);
    dq_taps taps = {want, observe, &h};
    for (int l = 0; !st && l < c->n_layers; l++) {
        for (int k = 0; k < N_LEARNED; k++) memset(h.sum[k], 0, (size_t)h.n[k] * h.n[k] * sizeof(double));
        h.tokens = 0;
        /* the windows through block l: its inputs' Hessians, and its outputs for block l+1 */
        for (int w = 0; !st && w < cs->n; w++) st = dq_block_forward(s, l, X + (size_t)w * cs->len * c->dim, cs->len, &taps, err);
        for (int k = 0; !st && k < N_LEARNED; k++) st = learn_tap(m, l, LEARNED[k], &h, o, &o->hero, err);
        if (!st && !dq_progress_report(&o->progress, "transform", (size_t)l + 1, (size_t)c->n_layers, err))
            st = DQ_ERR_CANCELLED;
    }
    if (o->hero.n) {
        o->hero.err_ratio /= o->hero.n;
        o->hero.rho_before /= o->hero.n, o->hero.rho_after /= o->hero.n;
    }
    dq_session_free(s);
    free(X);
    for (int k = 0; k < N_LEARNED; k++) free(h.sum[k]);
    return st;
}
