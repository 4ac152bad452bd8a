/* See fold.h. */
#include "transform/fold.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "util/error.h"

#define TILE 64 /* rows (or columns) per BLAS call */

const dq_site *dq_norm_of_tap(dq_tap tap) {
    switch (tap) {
    case DQ_TAP_ATTN_IN: return &DQ_SITES[DQ_SITE_ATTN_NORM];
    case DQ_TAP_FFN_IN: return &DQ_SITES[DQ_SITE_FFN_NORM];
    case DQ_TAP_HEAD_IN: return &DQ_SITES[DQ_SITE_OUTPUT_NORM];
    default: return NULL;
    }
}

/* The linears reading tap (the head for DQ_TAP_HEAD_IN), from the site table. */
static int readers(dq_tap tap, const dq_site **out) {
    dq_tap_data d = dq_tap_make(0, tap, NULL, 0, 0);
    memcpy(out, d.sites, (size_t)d.n_sites * sizeof *out);
    return d.n_sites;
}

static int width(const dq_model *m, const dq_site *s) {
    int r, c;
    dq_site_shape(s, &m->cfg, &r, &c);
    return c;
}

static int height(const dq_model *m, const dq_site *s) {
    int r, c;
    dq_site_shape(s, &m->cfg, &r, &c);
    return r;
}

/* W (rows x n) ← W Q. */
static dq_status times_q(float *W, size_t rows, int n, const float *Q, int nt, dq_error *err) {
    size_t tiles = (rows + TILE - 1) / TILE;
    int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : failed)
    for (size_t t = 0; t < tiles; t++) {
        size_t r0 = t * TILE, nr = rows - r0 < TILE ? rows - r0 : TILE;
        float *tmp = malloc(nr * (size_t)n * sizeof *tmp);
        if (!tmp) {
            failed = 1;
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, n, n, 1.0f, W + r0 * n, n, Q, n, 0.0f, tmp, n);
        memcpy(W + r0 * n, tmp, nr * (size_t)n * sizeof *tmp);
        free(tmp);
    }
    return failed ? dq_fail(err, DQ_ERR_NOMEM, "out of memory rotating a tensor") : DQ_OK;
}

/* W (n x cols) ← Qᵀ W, by tiles of columns. */
static dq_status qt_times(float *W, int n, size_t cols, const float *Q, int nt, dq_error *err) {
    size_t tiles = (cols + TILE - 1) / TILE;
    int failed = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(| : failed)
    for (size_t t = 0; t < tiles; t++) {
        size_t c0 = t * TILE, nc = cols - c0 < TILE ? cols - c0 : TILE;
        float *tmp = malloc((size_t)n * nc * sizeof *tmp);
        if (!tmp) {
            failed = 1;
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, (int)nc, n, 1.0f, Q, n, W + c0, (int)cols, 0.0f, tmp,
                    (int)nc);
        for (int i = 0; i < n; i++) memcpy(W + (size_t)i * cols + c0, tmp + (size_t)i * nc, nc * sizeof *tmp);
        free(tmp);
    }
    return failed ? dq_fail(err, DQ_ERR_NOMEM, "out of memory rotating a tensor") : DQ_OK;
}

/* W (rows x cols): column j times s[j]. */
static void scale_columns(float *W, size_t rows, int cols, const float *s) {
    for (size_t i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) W[i * cols + j] *= s[j];
}

/* The gain of the norm feeding tap, moved into its readers. */
static dq_status fold_norm(dq_model *m, int layer, dq_tap tap, dq_error *err) {
    const dq_site *norm = dq_norm_of_tap(tap), *rd[DQ_TAP_MAX_SITES];
    int n = readers(tap, rd), d = m->cfg.dim;
    float *g = dq_site_writable(m, layer, norm, err);
    if (!g) return err ? err->code : DQ_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        if (!dq_site_present(rd[i], &m->cfg)) continue;
        float *W = dq_site_writable(m, layer, rd[i], err);
        if (!W) return err ? err->code : DQ_ERR_NOMEM;
        scale_columns(W, (size_t)height(m, rd[i]), d, g);
    }
    for (int j = 0; j < d; j++) g[j] = 1.0f;
    return DQ_OK;
}

dq_status dq_fold_norms(dq_model *m, dq_error *err) {
    dq_status st = DQ_OK;
    for (int l = 0; !st && l < m->cfg.n_layers; l++) {
        st = fold_norm(m, l, DQ_TAP_ATTN_IN, err);
        if (!st) st = fold_norm(m, l, DQ_TAP_FFN_IN, err);
    }
    return st ? st : fold_norm(m, 0, DQ_TAP_HEAD_IN, err);
}

/* A norm of tap in block `layer` whose gains are not all exactly 1. */
static dq_status check_unit(const dq_model *m, int layer, dq_tap tap, dq_error *err) {
    const dq_site *norm = dq_norm_of_tap(tap);
    const float *g = dq_site_data(m, layer, norm);
    for (int j = 0; j < m->cfg.dim; j++)
        if (g[j] != 1.0f) {
            char name[160];
            dq_site_hf_name(norm, layer, name, sizeof name);
            return dq_fail(err, DQ_ERR_ARG, "%s: gain %d is %g, not 1: the residual stream can only be rotated "
                           "once every norm gain is folded into the linears (dq_fold_norms)", name, j, (double)g[j]);
        }
    return DQ_OK;
}

static dq_status rotate_site(dq_model *m, int layer, const dq_site *s, const float *Q, int nt, dq_error *err) {
    if (!dq_site_present(s, &m->cfg)) return DQ_OK;
    float *W = dq_site_writable(m, layer, s, err);
    if (!W) return err ? err->code : DQ_ERR_NOMEM;
    int rows = height(m, s), cols = width(m, s), d = m->cfg.dim;
    if (s->cols == DQ_DIM_MODEL) return times_q(W, (size_t)rows, d, Q, nt, err); /* reads the stream (the embedding's rows too) */
    return qt_times(W, d, (size_t)cols, Q, nt, err);                /* writes it */
}

dq_status dq_rotate_residual(dq_model *m, const float *Q, int nt, dq_error *err) {
    dq_status st = DQ_OK;
    for (int l = 0; !st && l < m->cfg.n_layers; l++) {
        st = check_unit(m, l, DQ_TAP_ATTN_IN, err);
        if (!st) st = check_unit(m, l, DQ_TAP_FFN_IN, err);
    }
    if (!st) st = check_unit(m, 0, DQ_TAP_HEAD_IN, err);
    for (int l = 0; !st && l < m->cfg.n_layers; l++)
        for (int lin = 0; !st && lin < DQ_LIN_PER_BLOCK; lin++) st = rotate_site(m, l, dq_site_of_linear(lin), Q, nt, err);
    bool tied = m->output == m->tok_embeddings; /* one tensor: rotated once */
    if (!st) st = rotate_site(m, 0, &DQ_SITES[DQ_SITE_TOKEN_EMBD], Q, nt, err);
    if (!st && !tied) st = rotate_site(m, 0, &DQ_SITES[DQ_SITE_OUTPUT], Q, nt, err);
    return st;
}

dq_status dq_rotate_heads(dq_model *m, int layer, const float *P, dq_error *err) {
    const dq_config *c = &m->cfg;
    int hd = c->head_dim, d = c->dim, group = c->n_heads / c->n_kv_heads, nq = c->n_heads * hd;
    float *V = dq_site_writable(m, layer, &DQ_SITES[DQ_SITE_V], err);
    float *O = V ? dq_site_writable(m, layer, &DQ_SITES[DQ_SITE_O], err) : NULL;
    float *bv = O && c->qkv_bias ? dq_site_writable(m, layer, &DQ_SITES[DQ_SITE_V_BIAS], err) : NULL;
    if (!O || (c->qkv_bias && !bv)) return err ? err->code : DQ_ERR_NOMEM;
    dq_status st = DQ_OK;
    for (int j = 0; !st && j < c->n_kv_heads; j++) {
        st = qt_times(V + (size_t)j * hd * d, hd, (size_t)d, P, 1, err);
        if (!st && bv) st = qt_times(bv + (size_t)j * hd, hd, 1, P, 1, err);
    }
    /* o's columns of query head h: O[:, h·hd : (h+1)·hd] ← that block times P */
    for (int h = 0; !st && h < c->n_kv_heads * group; h++) {
        float *blk = malloc((size_t)d * hd * sizeof *blk), *tmp = malloc((size_t)d * hd * sizeof *tmp);
        if (!blk || !tmp) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory rotating block %d's heads", layer);
        for (int i = 0; !st && i < d; i++) memcpy(blk + (size_t)i * hd, O + (size_t)i * nq + (size_t)h * hd, hd * sizeof *blk);
        if (!st) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, hd, hd, 1.0f, blk, hd, P, hd, 0.0f, tmp, hd);
        for (int i = 0; !st && i < d; i++) memcpy(O + (size_t)i * nq + (size_t)h * hd, tmp + (size_t)i * hd, hd * sizeof *tmp);
        free(blk), free(tmp);
    }
    return st;
}

dq_status dq_scale_inputs(dq_model *m, int layer, dq_tap tap, const float *s, dq_error *err) {
    if (tap != DQ_TAP_ATTN_IN && tap != DQ_TAP_FFN_IN && tap != DQ_TAP_FFN_HIDDEN)
        return dq_fail(err, DQ_ERR_ARG, "block %d: only the inputs of q/k/v, gate/up and down can be scaled", layer);
    const dq_site *rd[DQ_TAP_MAX_SITES];
    int n = readers(tap, rd), w = width(m, rd[0]);
    for (int j = 0; j < w; j++)
        if (!(s[j] > 0 && isfinite(s[j])))
            return dq_fail(err, DQ_ERR_NUMERIC, "block %d: scale %d of %s's input is %g (must be finite and > 0)",
                           layer, j, rd[0]->hf, (double)s[j]);
    if (tap == DQ_TAP_FFN_HIDDEN) { /* down's input silu(gate)·up: up's rows carry 1/s */
        float *up = dq_site_writable(m, layer, &DQ_SITES[DQ_SITE_UP], err);
        if (!up) return err ? err->code : DQ_ERR_NOMEM;
        for (int j = 0; j < w; j++)
            for (int k = 0; k < m->cfg.dim; k++) up[(size_t)j * m->cfg.dim + k] /= s[j];
    } else {
        float *g = dq_site_writable(m, layer, dq_norm_of_tap(tap), err);
        if (!g) return err ? err->code : DQ_ERR_NOMEM;
        for (int j = 0; j < w; j++) g[j] /= s[j];
    }
    for (int i = 0; i < n; i++) {
        float *W = dq_site_present(rd[i], &m->cfg) ? dq_site_writable(m, layer, rd[i], err) : NULL;
        if (dq_site_present(rd[i], &m->cfg) && !W) return err ? err->code : DQ_ERR_NOMEM;
        if (W) scale_columns(W, (size_t)height(m, rd[i]), w, s);
    }
    return DQ_OK;
}
