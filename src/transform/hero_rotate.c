/* HeRo-Q's learned residual rotation R1 (reconstructed, see
 * ../shared/specs/ALGORITHMS.md §3.2): a rotation is a similarity of every
 * input Hessian (RᵀHR), so it cannot move λ_max; what it moves is where the
 * quantization noise of the rotated weights lands relative to H's sharp
 * directions, and how even the weights are within each group (the grid's
 * step is set by a group's extremes). Starting from the random Hadamard
 * rotation (or a Haar-random one where no Hadamard matrix of the width
 * exists), R is learned on the Stiefel manifold by Cayley steps (Wen & Yin
 * 2013, as SpinQuant learns R1) to minimise
 *
 *   J(R) = mean over blocks and inputs g (q/k/v's, gate/up's) of E_g(R)/E_g(R0),
 *   E_g(R) = tr(N Rᵀ H_g R Nᵀ),   N = RTN(W_g R) − W_g R,
 *
 * W_g the readers' rows (norm gains folded in; at most hero_rows of them,
 * evenly spaced), H_g their input's mean Hessian from the calibration
 * windows, RTN in the quantizer's grid. Gradient: the rounding residual held
 * (straight-through), the group step through its extreme weights:
 *   ∂E/∂R = 2 H R NᵀN + Wᵀ G_W,
 * G_W the step's share at each group's extremes. Step: A = G Rᵀ − R Gᵀ,
 * R ← (I + ηA/2)⁻¹(I − ηA/2) R with η = lr/‖A‖_F decaying linearly, the best
 * iterate kept (never above J(R0) = 1). o_proj and down_proj (which R1
 * rotates on their output side) are not in J. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "transform/block_stats.h"
#include "transform/fold.h"
#include "transform/hadamard.h"
#include "transform/hero.h"
#include "util/error.h"

typedef struct {
    float *W; /* (rows, n) */
    float *H; /* (n, n) */
    int rows;
    double E0;
} rgroup;

typedef struct {
    int n, n_groups, group, maxq, cap;
    rgroup *g;
} rproblem;

/* collects every block's q/k/v and gate/up inputs (their Hessians and rows) */
static dq_status collect(void *ctx, dq_model *m, int layer, float *const H[DQ_BS_ALL], dq_error *err) {
    rproblem *p = ctx;
    for (int k = DQ_BS_ATTN_IN; k <= DQ_BS_FFN_IN; k++) {
        rgroup *g = &p->g[p->n_groups];
        size_t nn = (size_t)p->n * p->n;
        g->H = malloc(nn * sizeof *g->H);
        g->W = dq_stack_readers(m, layer, DQ_BS_TAPS[k], p->cap, &g->rows);
        if (!g->H || !g->W) {
            free(g->H), free(g->W);
            return dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's rotation statistics (block %d)", layer);
        }
        memcpy(g->H, H[k], nn * sizeof *g->H);
        p->n_groups++;
    }
    return DQ_OK;
}

typedef struct {
    float *Wr, *N, *P, *PH, *GW; /* (rows, n) each */
} scratch;

/* E_g(R); with G (n x n): G = ∂E_g/∂R · scale (overwritten). */
static double group_error(const rproblem *p, const rgroup *g, const float *R, scratch *s, float *G, float scale) {
    int n = p->n, r = g->rows, gs = p->group > 0 ? p->group : n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, n, n, 1.0f, g->W, n, R, n, 0.0f, s->Wr, n);
    if (G) memset(s->GW, 0, (size_t)r * n * sizeof *s->GW);
    for (int i = 0; i < r; i++)
        for (int c0 = 0; c0 < n; c0 += gs) {
            int c1 = c0 + gs < n ? c0 + gs : n;
            const float *w = s->Wr + (size_t)i * n;
            float *e = s->N + (size_t)i * n;
            dq_rtn_group q = dq_rtn_group_of(w + c0, c1 - c0, p->maxq);
            for (int j = c0; j < c1; j++) e[j] = (dq_rtn_code(&q, w[j], p->maxq) - q.zero) * q.step - w[j]; /* N = step·ε */
        }
    /* P = N Rᵀ (the noise in the stream's own coordinates), PH = P H, E = Σ P∘PH */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, n, n, 1.0f, s->N, n, R, n, 0.0f, s->P, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, n, n, 1.0f, s->P, n, g->H, n, 0.0f, s->PH, n);
    double E = 0;
    for (size_t k = 0; k < (size_t)r * n; k++) E += (double)s->P[k] * s->PH[k];
    if (!G) return E;
    /* through H' = RᵀHR: 2 H R NᵀN = 2 (PH)ᵀ N */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, r, 2.0f * scale, s->PH, n, s->N, n, 0.0f, G, n);
    /* through the steps: ∂E/∂N = 2 PH R, ∂E/∂step = Σ_group ∂E/∂N · N/step, at the extremes ±1/maxq */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, n, n, 2.0f, s->PH, n, R, n, 0.0f, s->P, n);
    for (int i = 0; i < r; i++)
        for (int c0 = 0; c0 < n; c0 += gs) {
            int c1 = c0 + gs < n ? c0 + gs : n;
            dq_rtn_group q = dq_rtn_group_of(s->Wr + (size_t)i * n + c0, c1 - c0, p->maxq);
            double dstep = 0;
            for (int j = c0; j < c1; j++) dstep += (double)s->P[(size_t)i * n + j] * s->N[(size_t)i * n + j] / q.step;
            if (q.jhi >= 0) s->GW[(size_t)i * n + c0 + q.jhi] += (float)(dstep / p->maxq);
            if (q.jlo >= 0) s->GW[(size_t)i * n + c0 + q.jlo] -= (float)(dstep / p->maxq);
        }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, r, scale, g->W, n, s->GW, n, 1.0f, G, n);
    return E;
}

/* J(R) = mean E_g/E_g0 and (G non-NULL) its gradient, groups in parallel, the
 * per-group gradients added in group order (the same at any thread count). */
static double objective(const rproblem *p, const float *R, scratch *s, float *Gs, float *G, int nt) {
    int n = p->n;
    size_t nn = (size_t)n * n;
    double J = 0;
    if (G) memset(G, 0, nn * sizeof *G);
    for (int g0 = 0; g0 < p->n_groups; g0 += nt) {
        int g1 = g0 + nt < p->n_groups ? g0 + nt : p->n_groups;
        double e[64];
#pragma omp parallel for num_threads(nt) schedule(static, 1)
        for (int g = g0; g < g1; g++) {
            const rgroup *gr = &p->g[g];
            float scale = (float)(1.0 / (p->n_groups * (gr->E0 > 0 ? gr->E0 : 1.0)));
            e[g - g0] = group_error(p, gr, R, &s[g - g0], G ? Gs + (size_t)(g - g0) * nn : NULL, scale);
        }
        for (int g = g0; g < g1; g++) {
            J += e[g - g0] / (p->g[g].E0 > 0 ? p->g[g].E0 : 1.0) / p->n_groups;
            for (size_t k = 0; G && k < nn; k++) G[k] += Gs[(size_t)(g - g0) * nn + k];
        }
    }
    return J;
}

/* R ← (I + ηA/2)⁻¹(I − ηA/2) R, A = G Rᵀ − R Gᵀ, in double; false when the solve fails. */
bool dq_cayley_step(float *R, const float *G, int n, double lr, double *A, double *B, double *C, lapack_int *piv) {
    size_t nn = (size_t)n * n;
    double *Rd = C, *Gd = A; /* borrowed: A and C are rewritten below */
    for (size_t k = 0; k < nn; k++) Rd[k] = R[k], Gd[k] = G[k];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, Gd, n, Rd, n, 0.0, B, n); /* B = G Rᵀ */
    double norm = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double a = B[(size_t)i * n + j] - B[(size_t)j * n + i];
            A[(size_t)i * n + j] = a, norm += a * a;
        }
    if (!(norm > 0)) return true;
    double eta = lr / sqrt(norm);
    for (size_t k = 0; k < nn; k++) B[k] = (k / n == k % n) - 0.5 * eta * A[k]; /* I − ηA/2 */
    for (size_t k = 0; k < nn; k++) Rd[k] = R[k];
    double *rhs = malloc(nn * sizeof *rhs);
    if (!rhs) return false;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, B, n, Rd, n, 0.0, rhs, n);
    for (size_t k = 0; k < nn; k++) B[k] = (k / n == k % n) + 0.5 * eta * A[k]; /* I + ηA/2 */
    lapack_int info = LAPACKE_dgesv(LAPACK_ROW_MAJOR, n, n, B, n, piv, rhs, n);
    for (size_t k = 0; !info && k < nn; k++) R[k] = (float)rhs[k];
    free(rhs);
    return info == 0;
}

dq_status dq_hero_learn_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R,
                                 dq_error *err) {
    int n = m->cfg.dim, nt = o->n_threads > 64 ? 64 : o->n_threads;
    rproblem p = {.n = n, .group = o->group, .maxq = (1 << o->bits) - 1, .cap = o->hero_rows};
    p.g = calloc((size_t)2 * m->cfg.n_layers, sizeof *p.g);
    unsigned inputs = DQ_BS_BIT(DQ_BS_ATTN_IN) | DQ_BS_BIT(DQ_BS_FFN_IN);
    dq_status st = p.g ? dq_block_hessians(m, cs, inputs, o->n_threads, &o->progress, collect, &p, err)
                       : dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's rotation");
    size_t nn = (size_t)n * n, rn = (size_t)(o->hero_rows > 0 ? o->hero_rows : 0);
    for (int g = 0; g < p.n_groups; g++) rn = rn > (size_t)p.g[g].rows ? rn : (size_t)p.g[g].rows;
    rn *= (size_t)n;
    scratch *s = calloc((size_t)nt, sizeof *s);
    float *Gs = malloc((size_t)nt * nn * sizeof *Gs), *G = malloc(nn * sizeof *G), *best = malloc(nn * sizeof *best);
    double *A = malloc(nn * sizeof *A), *B = malloc(nn * sizeof *B), *C = malloc(nn * sizeof *C);
    lapack_int *piv = malloc((size_t)n * sizeof *piv);
    bool ok = s && Gs && G && best && A && B && C && piv;
    for (int t = 0; ok && t < nt; t++) {
        s[t] = (scratch){malloc(rn * 4), malloc(rn * 4), malloc(rn * 4), malloc(rn * 4), malloc(rn * 4)};
        ok = s[t].Wr && s[t].N && s[t].P && s[t].PH && s[t].GW;
    }
    if (!st && !ok) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's rotation");
    if (!st) {
        for (int g = 0; g < p.n_groups; g++) p.g[g].E0 = group_error(&p, &p.g[g], R, &s[0], NULL, 1.0f);
        double Jbest = 1.0;
        memcpy(best, R, nn * sizeof *R);
        for (int step = 0; !st && step < o->hero_steps; step++) {
            double J = objective(&p, R, s, Gs, G, nt);
            if (J < Jbest) Jbest = J, memcpy(best, R, nn * sizeof *R);
            double lr = o->hero_rot_lr * (1.0 - (double)step / o->hero_steps);
            if (!dq_cayley_step(R, G, n, lr, A, B, C, piv))
                st = dq_fail(err, DQ_ERR_NUMERIC, "HeRo-Q rotation: the Cayley step's solve failed at step %d", step);
        }
        double J = st ? INFINITY : objective(&p, R, s, NULL, NULL, nt);
        if (J < Jbest) Jbest = J, memcpy(best, R, nn * sizeof *R);
        memcpy(R, best, nn * sizeof *R);
        o->hero.rot_err_ratio = Jbest;
    }
    for (int t = 0; s && t < nt; t++) free(s[t].Wr), free(s[t].N), free(s[t].P), free(s[t].PH), free(s[t].GW);
    for (int g = 0; p.g && g < p.n_groups; g++) free(p.g[g].W), free(p.g[g].H);
    free(s), free(Gs), free(G), free(best), free(A), free(B), free(C), free(piv), free(p.g);
    return st;
}

/* ---- HeRo-Q's learned R2 (reconstructed, as R1 above) -------------------------
 * Per block, the head rotation P (head_dim²) between v and o acts on o_proj's
 * input as B = diag(P, …, P) (one P per query head), so o_proj's rows are
 * W B and its input Hessian BᵀH_oB: the same objective as R1's with R = B,
 *   E(P) = tr(N Bᵀ H_o B Nᵀ),   N = RTN(W_o B) − W_o B,
 * whose gradient in P is the sum of ∂E/∂B's diagonal head blocks. P starts
 * from the rotation the caller made (random Hadamard) and moves by Cayley
 * steps; the best iterate is kept (ratio ≤ 1). v_proj's rows (Pᵀ V) are not
 * in E: a row rotation mixes its outputs, whose error o_proj then sees
 * rotated back. Each block's P is folded in (dq_rotate_heads) before the next
 * block's statistics, which the fold does not change (function kept). */

typedef struct {
    dq_transform_opts *o;
    const float *P0;
    double ratio_sum;
    int n;
} heads_ctx;

static void block_diag(const float *P, int hd, int heads, float *B) {
    int n = hd * heads;
    memset(B, 0, (size_t)n * n * sizeof *B);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < hd; i++)
            memcpy(B + (size_t)(h * hd + i) * n + h * hd, P + (size_t)i * hd, (size_t)hd * sizeof *B);
}

static dq_status learn_heads_block(void *ctx, dq_model *m, int layer, float *const H[DQ_BS_ALL], dq_error *err) {
    heads_ctx *c = ctx;
    dq_transform_opts *o = c->o;
    int hd = m->cfg.head_dim, heads = m->cfg.n_heads, n = hd * heads;
    size_t nn = (size_t)n * n, pp = (size_t)hd * hd;
    rgroup g = {.H = H[DQ_BS_ATTN_OUT]};
    g.W = dq_stack_readers(m, layer, DQ_TAP_ATTN_OUT, o->hero_rows, &g.rows);
    rproblem p = {.n = n, .n_groups = 1, .group = o->group, .maxq = (1 << o->bits) - 1, .g = &g};
    size_t rn = (size_t)g.rows * n;
    scratch s = {malloc(rn * 4), malloc(rn * 4), malloc(rn * 4), malloc(rn * 4), malloc(rn * 4)};
    float *B = malloc(nn * sizeof *B), *G = malloc(nn * sizeof *G), *P = malloc(pp * sizeof *P);
    float *Gp = malloc(pp * sizeof *Gp), *best = malloc(pp * sizeof *best);
    double *A = malloc(pp * sizeof *A), *Bd = malloc(pp * sizeof *Bd), *C = malloc(pp * sizeof *C);
    lapack_int *piv = malloc((size_t)hd * sizeof *piv);
    dq_status st = g.W && s.Wr && s.N && s.P && s.PH && s.GW && B && G && P && Gp && best && A && Bd && C && piv
                       ? DQ_OK
                       : dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's head rotation (block %d)", layer);
    if (!st) {
        memcpy(P, c->P0, pp * sizeof *P);
        memcpy(best, P, pp * sizeof *P);
        block_diag(P, hd, heads, B);
        g.E0 = group_error(&p, &g, B, &s, NULL, 1.0f);
        double inv = g.E0 > 0 ? 1.0 / g.E0 : 1.0, Jbest = 1.0;
        for (int step = 0; !st && step <= o->hero_steps; step++) {
            block_diag(P, hd, heads, B);
            bool last = step == o->hero_steps;
            double J = group_error(&p, &g, B, &s, last ? NULL : G, (float)inv) * inv;
            if (J < Jbest) Jbest = J, memcpy(best, P, pp * sizeof *P);
            if (last) break;
            memset(Gp, 0, pp * sizeof *Gp); /* ∂E/∂P: the diagonal head blocks of ∂E/∂B, summed */
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < hd; i++)
                    for (int j = 0; j < hd; j++) Gp[(size_t)i * hd + j] += G[(size_t)(h * hd + i) * n + h * hd + j];
            double lr = o->hero_rot_lr * (1.0 - (double)step / o->hero_steps);
            if (!dq_cayley_step(P, Gp, hd, lr, A, Bd, C, piv))
                st = dq_fail(err, DQ_ERR_NUMERIC, "HeRo-Q head rotation, block %d: the Cayley step's solve failed at "
                             "step %d", layer, step);
        }
        double e = st ? 0 : dq_orthogonality_error(best, hd);
        if (!st && !(e <= 1e-4))
            st = dq_fail(err, DQ_ERR_NUMERIC, "HeRo-Q head rotation, block %d: %g away from orthogonal (max |PᵀP - I|, "
                         "1e-4 allowed): refused rather than change the model", layer, e);
        o->orth_err = fmax(o->orth_err, e);
        if (!st) st = dq_rotate_heads(m, layer, best, err);
        c->ratio_sum += Jbest, c->n++;
    }
    free(g.W), free(s.Wr), free(s.N), free(s.P), free(s.PH), free(s.GW), free(B), free(G), free(P), free(Gp);
    free(best), free(A), free(Bd), free(C), free(piv);
    return st;
}

dq_status dq_hero_learn_heads(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, const float *P0,
                              dq_error *err) {
    heads_ctx c = {.o = o, .P0 = P0};
    dq_status st = dq_block_hessians(m, cs, DQ_BS_BIT(DQ_BS_ATTN_OUT), o->n_threads, &o->progress, learn_heads_block,
                                     &c, err);
    o->hero.r2_err_ratio = c.n ? c.ratio_sum / c.n : 0;
    return st;
}
