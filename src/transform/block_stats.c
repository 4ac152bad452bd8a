/* See block_stats.h. */
#include "transform/block_stats.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "util/error.h"
#include "util/progress.h"

#define TILE 64

const dq_tap DQ_BS_TAPS[DQ_BS_ALL] = {DQ_TAP_ATTN_IN, DQ_TAP_FFN_IN, DQ_TAP_FFN_HIDDEN, DQ_TAP_ATTN_OUT};

typedef struct {
    int n[DQ_BS_ALL];
    double *sum[DQ_BS_ALL]; /* (n, n) Σ x xᵀ; NULL: not collected */
    float *tiles;             /* nt x TILE x nmax */
    int nmax;                 /* the widest input: each thread's tile stride */
    size_t tokens;
    bool counted; /* this window's tokens are in `tokens` */
    int nt;
} hess_ctx;

static int slot_of(dq_tap t) {
    for (int k = 0; k < DQ_BS_ALL; k++)
        if (DQ_BS_TAPS[k] == t) return k;
    return -1;
}

static bool want(void *ctx, int layer, dq_tap tap) {
    (void)layer;
    int k = slot_of(tap);
    return k >= 0 && ((hess_ctx *)ctx)->sum[k] != NULL;
}

/* Σ x xᵀ by row tiles, one single-threaded sgemm each, added in double. */
static void observe(void *ctx, const dq_tap_data *d) {
    hess_ctx *h = ctx;
    int k = slot_of(d->tap), n = d->cols;
    if (k < 0 || !h->sum[k]) return; /* not asked for (want() said no) */
    double *S = h->sum[k];
    if (!h->counted) h->tokens += (size_t)d->T, h->counted = true;
    int tiles = (n + TILE - 1) / TILE;
#pragma omp parallel for num_threads(h->nt) schedule(static)
    for (int t = 0; t < tiles; t++) {
        int r0 = t * TILE, nr = n - r0 < TILE ? n - r0 : TILE;
        float *tmp = h->tiles + (size_t)omp_get_thread_num() * TILE * h->nmax;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nr, n, d->T, 1.0f, d->x + r0, n, d->x, n, 0.0f, tmp, n);
        for (size_t i = 0; i < (size_t)nr * n; i++) S[(size_t)r0 * n + i] += tmp[i];
    }
}

dq_status dq_block_hessians(dq_model *m, const dq_calib_set *cs, unsigned inputs, int nt, const dq_progress *progress,
                            dq_block_hessian_fn fn, void *ctx, dq_error *err) {
    const dq_config *c = &m->cfg;
    int nq = c->n_heads * c->head_dim, nmax = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;
    nmax = nq > nmax ? nq : nmax;
    hess_ctx h = {.n = {c->dim, c->dim, c->hidden_dim, nq}, .nmax = nmax, .nt = nt};
    float *X = malloc((size_t)cs->n * cs->len * c->dim * sizeof *X), *H[DQ_BS_ALL] = {0};
    h.tiles = malloc((size_t)nt * TILE * nmax * sizeof *h.tiles);
    bool ok = X && h.tiles;
    for (int k = 0; k < DQ_BS_ALL; k++) {
        if (!(inputs & DQ_BS_BIT(k))) continue;
        h.sum[k] = malloc((size_t)h.n[k] * h.n[k] * sizeof(double));
        H[k] = malloc((size_t)h.n[k] * h.n[k] * sizeof(float));
        ok = ok && h.sum[k] && H[k];
    }
    dq_session *s = NULL;
    dq_status st = ok ? dq_session_new(m, cs->len, cs->len, nt, &s, err)
                      : dq_fail(err, DQ_ERR_NOMEM, "out of memory for the block inputs' Hessians");
    if (!st) st = dq_calib_embed(m, cs, 0, cs->n, X, err);
    dq_taps taps = {want, observe, &h};
    for (int l = 0; !st && l < c->n_layers; l++) {
        for (int k = 0; k < DQ_BS_ALL; k++)
            if (h.sum[k]) memset(h.sum[k], 0, (size_t)h.n[k] * h.n[k] * sizeof(double));
        h.tokens = 0;
        for (int w = 0; !st && w < cs->n; w++) {
            h.counted = false; /* a window's tokens counted once, by its first wanted tap */
            st = dq_block_forward(s, l, X + (size_t)w * cs->len * c->dim, cs->len, &taps, err);
        }
        double inv = h.tokens ? 1.0 / (double)h.tokens : 0;
        for (int k = 0; !st && k < DQ_BS_ALL; k++)
            for (size_t i = 0; h.sum[k] && i < (size_t)h.n[k] * h.n[k]; i++) H[k][i] = (float)(h.sum[k][i] * inv);
        if (!st) st = fn(ctx, m, l, H, err);
        if (!st && !dq_progress_report(progress, "transform", (size_t)l + 1, (size_t)c->n_layers, err))
            st = DQ_ERR_CANCELLED;
    }
    dq_session_free(s);
    free(X), free(h.tiles);
    for (int k = 0; k < DQ_BS_ALL; k++) free(h.sum[k]), free(H[k]);
    return st;
}

float *dq_stack_readers(const dq_model *m, int layer, dq_tap tap, int cap, int *rows) {
    dq_tap_data d = dq_tap_make(layer, tap, NULL, 0, 0);
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
        memcpy(W + (size_t)at * n, dq_site_data(m, layer, d.sites[i]), (size_t)r * c * sizeof *W);
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
