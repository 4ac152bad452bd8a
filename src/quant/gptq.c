#define _GNU_SOURCE /* qsort_r */
/* GPTQ (Frantar et al. 2022), following the IST-DASLab reference gptq.py:
 * dead columns, relative dampening, Hinv = chol(chol_inverse(chol(H)))ᵀ,
 * column sweep in lazy blocks with error feedback, groups found on the
 * "global" W (updated only at block ends, as the reference does), act-order
 * with static groups. Every row is independent given Hinv, so rows are
 * processed in fixed chunks in parallel: results do not depend on threads. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "util/error.h"

#define ROW_CHUNK 32

typedef struct {
    const dq_quant_opts *o;
    int cols, G, gpr, maxq;
    const float *Hinv;       /* (cols, cols) upper Cholesky factor of H^-1, permuted if act-order */
    const int *perm;         /* act-order: permuted position -> original column; else NULL */
    dq_group_params *params; /* plain groups (rows, gpr): fixed up front (per-channel, static) or found in the sweep */
    /* grid mode: blocks fitted on the format's grid under diag(H), at each
     * block's first column (or up front with act-order) */
    const dq_grid *grid;
    const float *hdiag;      /* (cols) undamped diag(H), original column order */
    dq_ggml_block *blocks;   /* (rows, cols / grid->block) */
    dq_grid_step *steps;     /* (rows, gpr) effective step of each sub-block */
} gptq_ctx;

/* Fits block b of row r on the grid from the row's current weights w
 * (original column order) under diag(H)·sqrt(σ²_block + w²) and records its
 * sub-block steps. */
static void fit_grid_block(const gptq_ctx *c, const float *w, int r, int b) {
    const dq_grid *g = c->grid;
    uint8_t q[256];
    float imp[256];
    dq_ggml_block *p = &c->blocks[(size_t)r * (c->cols / g->block) + b];
    dq_grid_importance(w, c->hdiag + (size_t)b * g->block, g->block, imp);
    dq_grid_fit(g, w, imp, true, dq_grid_starts(c->o, true), p, q);
    for (int s = 0; s < g->block / g->sub; s++)
        c->steps[(size_t)r * c->gpr + (size_t)b * (g->block / g->sub) + s] = dq_grid_step_of(g, p, s);
}

/* H^-1's upper Cholesky factor, in place; H is damped first by percdamp ×
 * the mean of diag(H) over the layer's own columns (original index < live;
 * perm maps H's order to them): padding columns, whose diagonal the
 * dead-column rule set to 1, must not move the damping of the others. */
static dq_status inverse_factor(float *H, int n, float percdamp, const int *perm, int live, dq_error *err) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        if ((perm ? perm[i] : i) < live) sum += H[(size_t)i * n + i];
    float damp = percdamp * (float)(sum / live);
    for (int i = 0; i < n; i++) H[(size_t)i * n + i] += damp;
    lapack_int rc = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', n, H, n);
    if (rc == 0) rc = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', n, H, n);
    if (rc != 0)
        return dq_fail(err, DQ_ERR_NUMERIC,
                       "Hessian (%d columns) is not positive definite after %.3g dampening (LAPACK "
                       "info %d); raise --percdamp or use more calibration data",
                       n, (double)percdamp, (int)rc);
    for (int i = 0; i < n; i++) /* spotri fills the lower triangle: make H^-1 whole */
        for (int j = i + 1; j < n; j++) H[(size_t)i * n + j] = H[(size_t)j * n + i];
    rc = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', n, H, n);
    if (rc != 0) return dq_fail(err, DQ_ERR_NUMERIC, "Cholesky of H^-1 failed (LAPACK info %d)", (int)rc);
    return DQ_OK;
}

/* Sweeps nr rows starting at row r0. W: their weights (permuted columns,
 * updated in place as the "global" W); Q: their codes (permuted order). */
static void sweep_rows(const gptq_ctx *c, float *W, int nr, int r0, uint8_t *Q, float *W1, float *Err1) {
    int cols = c->cols, bs = c->o->blocksize, G = c->G;
    bool dynamic = !c->perm && (c->grid || G != cols);
    for (int i1 = 0; i1 < cols; i1 += bs) {
        int i2 = i1 + bs < cols ? i1 + bs : cols, count = i2 - i1;
        for (int r = 0; r < nr; r++)
            memcpy(W1 + (size_t)r * bs, W + (size_t)r * cols + i1, (size_t)count * sizeof(float));
        for (int i = 0; i < count; i++) {
            int col = i1 + i, g = (c->perm ? c->perm[col] : col) / G;
            float d = c->Hinv[(size_t)col * cols + col];
            const float *hrow = c->Hinv + (size_t)col * cols + i1;
            for (int r = 0; r < nr; r++) {
                float *w1 = W1 + (size_t)r * bs, wq;
                int q;
                if (c->grid) {
                    if (dynamic && col % c->grid->block == 0)
                        fit_grid_block(c, W + (size_t)r * cols + col, r0 + r, col / c->grid->block);
                    dq_grid_step st = c->steps[(size_t)(r0 + r) * c->gpr + g];
                    q = dq_grid_code(c->grid, st, w1[i]);
                    wq = dq_grid_value(c->grid, st, q);
                } else {
                    dq_group_params *p = &c->params[(size_t)(r0 + r) * c->gpr + g];
                    if (dynamic && col % G == 0) *p = dq_find_params(c->o, W + (size_t)r * cols + col, G);
                    q = dq_quant_code(w1[i], *p, c->maxq);
                    wq = dq_dequant(q, *p);
                }
                Q[(size_t)r * cols + col] = (uint8_t)q;
                float e = (w1[i] - wq) / d;
                for (int k = i; k < count; k++) w1[k] -= e * hrow[k];
                Err1[(size_t)r * bs + i] = e;
            }
        }
        if (i2 < cols) /* lazy batch update: W[:, i2:] -= Err1 · Hinv[i1:i2, i2:] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, cols - i2, count, -1.0f, Err1, bs,
                        c->Hinv + (size_t)i1 * cols + i2, cols, 1.0f, W + i2, cols);
    }
}

static int cmp_desc(const void *a, const void *b, void *diag) {
    float x = ((const float *)diag)[*(const int *)a], y = ((const float *)diag)[*(const int *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int *)a - *(const int *)b; /* stable, as torch.argsort on distinct keys */
}

/* Act-order: columns by descending diag(H); permutes H in place, returns perm. */
static int *act_order(float *H, float *Hp, int n) {
    int *perm = malloc((size_t)n * sizeof *perm);
    float *diag = malloc((size_t)n * sizeof *diag);
    if (!perm || !diag) {
        free(perm), free(diag);
        return NULL;
    }
    for (int i = 0; i < n; i++) perm[i] = i, diag[i] = H[(size_t)i * n + i];
    qsort_r(perm, (size_t)n, sizeof *perm, cmp_desc, diag);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) Hp[(size_t)i * n + j] = H[(size_t)perm[i] * n + perm[j]];
    free(diag);
    return perm;
}

static dq_status run(gptq_ctx *c, float *Wp, int rows, int n_threads, dq_qtensor *out, dq_error *err) {
    int cols = c->cols, chunks = (rows + ROW_CHUNK - 1) / ROW_CHUNK;
    uint8_t *Qp = malloc((size_t)rows * cols);
    if (!Qp) return dq_fail(err, DQ_ERR_NOMEM, "GPTQ: out of memory");
    bool oom = false;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1)
    {
        float *W1 = malloc((size_t)ROW_CHUNK * c->o->blocksize * sizeof(float));
        float *E1 = malloc((size_t)ROW_CHUNK * c->o->blocksize * sizeof(float));
        if (!W1 || !E1) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < chunks; k++) {
            if (oom) continue;
            int r0 = k * ROW_CHUNK, nr = rows - r0 < ROW_CHUNK ? rows - r0 : ROW_CHUNK;
            sweep_rows(c, Wp + (size_t)r0 * cols, nr, r0, Qp + (size_t)r0 * cols, W1, E1);
        }
        free(W1);
        free(E1);
    }
    if (oom) {
        free(Qp);
        return dq_fail(err, DQ_ERR_NOMEM, "GPTQ: out of memory");
    }
    for (int r = 0; r < rows; r++) /* codes back to the original column order */
        for (int i = 0; i < cols; i++) out->q[(size_t)r * cols + (c->perm ? c->perm[i] : i)] = Qp[(size_t)r * cols + i];
    if (c->grid) {
        memcpy(out->blocks, c->blocks, (size_t)rows * (size_t)(cols / c->grid->block) * sizeof *out->blocks);
        dq_qtensor_fill_steps(out);
    } else {
        for (size_t g = 0; g < (size_t)rows * c->gpr; g++)
            out->scale[g] = c->params[g].scale, out->zero[g] = c->params[g].zero;
    }
    free(Qp);
    return DQ_OK;
}

dq_status dq_quantize_gptq(const float *W, int rows, int cols, const float *H_in, const dq_quant_opts *o,
                           int n_threads, dq_qtensor *out, dq_error *err) {
    dq_status st = o->grid ? dq_qtensor_alloc_grid(out, rows, cols, o->grid, err)
                           : dq_qtensor_alloc(out, rows, cols, o->group, o->bits, err);
    if (st) return st;
    gptq_ctx c = {.o = o, .cols = cols, .G = out->group, .gpr = out->groups_per_row, .maxq = (1 << out->bits) - 1,
                  .grid = o->grid};
    size_t nn = (size_t)cols * cols, nw = (size_t)rows * cols;
    float *H = malloc(nn * sizeof *H), *Hp = o->act_order ? malloc(nn * sizeof *Hp) : NULL;
    float *Wc = malloc(nw * sizeof *Wc), *Wp = o->act_order ? malloc(nw * sizeof *Wp) : NULL;
    float *hdiag = o->grid ? malloc((size_t)cols * sizeof *hdiag) : NULL;
    if (!o->grid) c.params = malloc((size_t)rows * c.gpr * sizeof *c.params);
    else {
        c.blocks = calloc((size_t)rows * (size_t)(cols / o->grid->block), sizeof *c.blocks);
        c.steps = malloc((size_t)rows * c.gpr * sizeof *c.steps);
    }
    c.hdiag = hdiag;
    int *perm = NULL;
    if (!H || !Wc || (o->act_order && (!Hp || !Wp)) || (o->grid ? !hdiag || !c.blocks || !c.steps : !c.params)) {
        st = dq_fail(err, DQ_ERR_NOMEM, "GPTQ: out of memory for a %d-column Hessian", cols);
        goto done;
    }
    memcpy(H, H_in, nn * sizeof *H);
    memcpy(Wc, W, nw * sizeof *Wc);
    if (c.G == cols && !o->grid) /* per channel: the reference finds these before zeroing dead columns */
        for (int r = 0; r < rows; r++) c.params[r] = dq_find_params(o, Wc + (size_t)r * cols, cols);
    for (int j = 0; j < cols; j++)
        if (H[(size_t)j * cols + j] == 0.0f) {
            H[(size_t)j * cols + j] = 1.0f;
            for (int r = 0; r < rows; r++) Wc[(size_t)r * cols + j] = 0.0f;
        }
    for (int j = 0; hdiag && j < cols; j++) hdiag[j] = H[(size_t)j * cols + j];
    if (o->act_order && o->grid) /* static blocks on the unpermuted, un-updated W */
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < cols / o->grid->block; b++)
                fit_grid_block(&c, Wc + (size_t)r * cols + (size_t)b * o->grid->block, r, b);
    if (o->act_order) {
        if (c.G != cols && !o->grid) /* static groups on the unpermuted, un-updated W */
            for (int r = 0; r < rows; r++)
                for (int g = 0; g < c.gpr; g++)
                    c.params[(size_t)r * c.gpr + g] = dq_find_params(o, Wc + (size_t)r * cols + (size_t)g * c.G, c.G);
        if (!(perm = act_order(H, Hp, cols))) {
            st = dq_fail(err, DQ_ERR_NOMEM, "GPTQ: out of memory");
            goto done;
        }
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < cols; i++) Wp[(size_t)r * cols + i] = Wc[(size_t)r * cols + perm[i]];
        memcpy(H, Hp, nn * sizeof *H);
        c.perm = perm;
    }
    /* Padding columns are dead (zero H row and column): they get H_jj = 1
     * and stay decoupled, so their weights stay exactly 0 through the error
     * feedback and code as 0 (inside every group's range). */
    if ((st = inverse_factor(H, cols, o->percdamp, perm, cols - o->pad, err))) goto done;
    c.Hinv = H;
    st = run(&c, o->act_order ? Wp : Wc, rows, n_threads, out, err);
done:
    free(H), free(Hp), free(Wc), free(Wp), free(c.params), free(perm), free(hdiag), free(c.blocks), free(c.steps);
    if (st) dq_qtensor_free(out);
    return st;
}
